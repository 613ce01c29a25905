// The upload page: pick a mode, drop photos, watch each one, compare and download.
import { makeZip } from "./zip.mjs";
import { viewUrl } from "./api.mjs";
import { FINAL, Jobs } from "./jobs.mjs";

const MODES = ["person", "building", "old-photo"];
const POLL_MS = 3000;

const lang = (navigator.languages || [navigator.language]).some((l) => /^zh\b/i.test(l || "")) ? "zh" : "en";
let strings = {};

function t(path, vars = {}) {
  const text = path.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), strings);
  if (typeof text !== "string") return path;
  return text.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.filter((c) => c != null));
  return node;
}

function duration(seconds) {
  return seconds < 90 ? t("time.seconds", { n: Math.max(1, Math.round(seconds)) })
    : t("time.minutes", { n: Math.round(seconds / 60) });
}

function resultName(job) {
  return `${job.name.replace(/\.[^.]+$/, "")}_restored.png`;
}

export function statusText(job, pending) {
  if (job.wait && job.wait.until > Date.now()) {
    return t(`state.${job.wait.kind}`, { n: Math.ceil((job.wait.until - Date.now()) / 1000) });
  }
  const total = Math.max(pending ?? 0, job.position ?? 0);
  switch (job.state) {
    case "pending":
    case "stuck":
      if (!job.position) return t("state.queued", { position: "…", total: total || "…" });
      return job.eta != null ? t("state.queuedEta", { position: job.position, total, eta: duration(job.eta) })
        : t("state.queued", { position: job.position, total });
    case "waiting_for_memory":
      return t("state.waiting_for_memory", { position: job.position || 1, total: total || 1 });
    case "running":
      return job.progress != null ? t("state.runningProgress", { percent: Math.round(job.progress * 100) })
        : t("state.running");
    case "failed":
    case "cancelled": {
      const reason = t(`reason.${job.reason || "unknown"}`);
      const text = job.error ? `${reason} (${job.error})` : reason;
      return job.state === "cancelled" ? t("state.cancelled") : t("state.failed", { reason: text });
    }
    default:
      return t(`state.${job.state}`);
  }
}

function compare(job) {
  const handle = el("div", { class: "rg-handle" });
  const after = el("img", { class: "rg-after", src: viewUrl(job.result), alt: t("after") });
  const slider = el("input", {
    type: "range", min: "0", max: "100", value: "50", "aria-label": t("compare"),
    oninput: (e) => {
      after.style.clipPath = `inset(0 0 0 ${e.target.value}%)`;
      handle.style.left = `${e.target.value}%`;
    },
  });
  const before = el("img", { class: "rg-before-img", alt: t("before"),
    src: viewUrl({ filename: job.uploaded.split("/").pop(), subfolder: job.uploaded.split("/").slice(0, -1).join("/"),
                   type: "input" }) });
  return el("div", {},
    el("div", { class: "rg-compare" }, before, after, handle, slider),
    el("div", { class: "rg-labels" }, el("span", { text: t("before") }), el("span", { text: t("after") })));
}

function card(job, jobs) {
  const item = el("li", { class: "rg-photo", "data-id": job.id, "data-state": job.state,
                          "data-prompt-id": job.promptId || null, "data-position": job.position ?? null });
  const status = el("div", { class: "rg-status", role: "status", text: statusText(job, jobs.pending) });
  item.append(el("div", { class: "rg-photo-name", text: `${job.name} · ${t(`mode.${job.mode}.name`)}` }), status);
  if (job.state === "running") {
    const bar = el("div", { class: "rg-bar" }, el("div"));
    bar.firstChild.style.width = `${Math.round((job.progress ?? 0.05) * 100)}%`;
    item.append(bar);
  }
  const actions = el("div", { class: "rg-actions" });
  if (job.state === "success" && job.result) {
    item.append(compare(job));
    actions.append(el("a", { class: "rg-button rg-download", href: viewUrl(job.result), download: resultName(job),
                             text: t("download") }));
  }
  if ((job.state === "failed" || job.state === "cancelled") && job.promptId) {
    actions.append(el("button", { type: "button", class: "rg-retry", text: t("retry"),
                                  onclick: () => jobs.retry(job).catch((e) => jobs.fail(job, e)) }));
  }
  actions.append(el("button", { type: "button", class: "rg-remove", text: t("remove"), onclick: () => jobs.remove(job) }));
  item.append(actions);
  return item;
}

function render(jobs) {
  const list = document.querySelector(".rg-photos");
  const byId = new Map([...list.children].map((c) => [c.dataset.id, c]));
  const keep = new Set();
  let previous = null;
  for (const job of jobs.jobs) {
    keep.add(job.id);
    const signature = JSON.stringify([job.state, job.position, job.eta, job.progress, job.error, job.result,
                                      job.wait && job.state !== "success" ? statusText(job, jobs.pending) : null,
                                      jobs.pending, strings === null]);
    let node = byId.get(job.id);
    if (!node || node.dataset.signature !== signature) {
      const fresh = card(job, jobs);
      fresh.dataset.signature = signature;
      if (node) node.replaceWith(fresh);
      node = fresh;
    }
    if (previous ? previous.nextSibling !== node : list.firstChild !== node) {
      if (previous) previous.after(node); else list.prepend(node);
    }
    previous = node;
  }
  for (const [id, node] of byId) if (!keep.has(id)) node.remove();
  document.querySelector(".rg-empty").hidden = jobs.jobs.length > 0;
  document.querySelector(".rg-download-all").disabled = !jobs.jobs.some((j) => j.state === "success" && j.result);
}

async function downloadAll(jobs) {
  const done = jobs.jobs.filter((j) => j.state === "success" && j.result);
  const used = new Set();
  const files = [];
  for (const job of done) {
    let name = resultName(job);
    for (let n = 2; used.has(name); n++) name = resultName(job).replace(/\.png$/, `_${n}.png`);
    used.add(name);
    const data = new Uint8Array(await (await fetch(viewUrl(job.result))).arrayBuffer());
    files.push({ name, data });
  }
  const link = el("a", { href: URL.createObjectURL(makeZip(files)), download: "restored-photos.zip" });
  document.body.append(link);
  link.click();
  link.remove();
}

function modePicker() {
  const list = document.querySelector(".rg-mode-list");
  const chosen = localStorage.getItem("restorationUpload.mode") || "old-photo";
  for (const mode of MODES) {
    list.append(el("label", { class: "rg-mode" },
      el("input", { type: "radio", name: "mode", value: mode, checked: mode === chosen,
                    onchange: () => localStorage.setItem("restorationUpload.mode", mode) }),
      el("img", { src: `/restoration/thumbs/${mode}.jpg`, alt: "" }),
      el("span", {}, el("b", { text: t(`mode.${mode}.name`) }), el("small", { text: t(`mode.${mode}.hint`) }))));
  }
}

function currentMode() {
  if (document.querySelector("input[name=faces-only]").checked) return "faces";
  return document.querySelector("input[name=mode]:checked")?.value || "old-photo";
}

async function main() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  strings = await (await fetch(`/restoration/strings/${lang}.json`)).json();
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  modePicker();
  const jobs = new Jobs();
  window.restorationUpload = jobs; // for tests and the curious
  jobs.addEventListener("change", () => render(jobs));
  render(jobs);
  const input = document.querySelector(".rg-drop input");
  const addFiles = (files) => { for (const f of files) jobs.add(f, currentMode()); };
  input.addEventListener("change", () => { addFiles([...input.files]); input.value = ""; });
  const drop = document.querySelector(".rg-drop");
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("rg-over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("rg-over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("rg-over"); addFiles([...e.dataTransfer.files]); });
  document.querySelector(".rg-download-all").addEventListener("click", () => downloadAll(jobs));
  document.querySelector(".rg-clear").addEventListener("click", () => jobs.clearFinished());
  jobs.connect();
  jobs.resume();
  const tick = async () => {
    try { await jobs.poll(); } catch { /* the next tick tries again */ }
    render(jobs);
    setTimeout(tick, POLL_MS);
  };
  tick();
  setInterval(() => { if (jobs.jobs.some((j) => j.wait && !FINAL.has(j.state))) render(jobs); }, 1000);
  document.body.dataset.ready = "true";
}

main();
