// The server as the page sees it: the public API only, with patient retries.
// 429 -> wait Retry-After (onWait("busy", s)); 503 / network errors -> back off (onWait("offline", s)).

export class ApiError extends Error {
  constructor(status, message, type) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function errorText(status, body) {
  const err = body && typeof body === "object" ? body.error : null;
  if (err && typeof err === "object") {
    let text = [err.message, err.details].filter(Boolean).join(": ");
    for (const [id, info] of Object.entries(body.node_errors || {})) {
      for (const e of info.errors || []) text += `; ${info.class_type || id}: ${e.message} ${e.details || ""}`;
    }
    return [text || `HTTP ${status}`, err.type || ""];
  }
  return [typeof body === "string" && body ? body.slice(0, 200) : `HTTP ${status}`, ""];
}

/** fetch with retries; ``onWait(kind, seconds)`` is told before each wait. Returns the Response. */
export async function call(path, init = {}, onWait = () => {}) {
  let delay = 1;
  for (;;) {
    let response = null;
    try {
      const body = typeof init.body === "function" ? init.body() : init.body;
      response = await fetch(path, { ...init, body });
    } catch {
      response = null;
    }
    if (response && response.status === 429) {
      const wait = Math.max(1, Math.ceil(Number(response.headers.get("Retry-After")) || 5));
      onWait("busy", wait);
      await sleep(wait * 1000);
      continue;
    }
    if (!response || [502, 503, 504].includes(response.status)) {
      const hinted = response ? Number(response.headers.get("Retry-After")) : NaN;
      const wait = Math.min(60, Math.ceil(hinted > 0 ? hinted : delay));
      onWait("offline", wait);
      await sleep(wait * 1000);
      delay = Math.min(delay * 2, 30);
      continue;
    }
    if (!response.ok) {
      let body = null;
      try { body = await response.clone().json(); } catch { body = await response.text().catch(() => ""); }
      const [message, type] = errorText(response.status, body);
      throw new ApiError(response.status, message, type);
    }
    return response;
  }
}

export async function callJson(path, init, onWait) {
  return (await call(path, init, onWait)).json();
}

export function viewUrl(image) {
  const q = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder || "", type: image.type });
  return `/view?${q}`;
}
