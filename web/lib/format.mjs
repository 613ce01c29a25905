// Human-readable times, sizes and ids for the governor UI (locale text comes through t()).

/** "about 40 s", "about 3 min", "about 1 h 5 min"; "any moment" under 5 s; null when unknown. */
export function formatEta(seconds, t) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return null;
  if (seconds < 5) return t("time.soon");
  const roundedSeconds = Math.ceil(seconds / 5) * 5;
  if (roundedSeconds < 60) return t("time.aboutSeconds", { n: roundedSeconds });
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return t("time.aboutMinutes", { n: Math.max(1, minutes) });
  const hours = Math.floor(minutes / 60);
  return t("time.aboutHours", { h: hours, m: minutes % 60 });
}

/** A duration that already happened: "12 s", "3 min 5 s", "1 h 2 min". */
export function formatDuration(seconds, t) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return t("time.seconds", { n: s });
  if (s < 3600) return t("time.minutesSeconds", { m: Math.floor(s / 60), s: s % 60 });
  return t("time.hoursMinutes", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return "?";
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${UNITS[unit]}`;
}

export function formatPercent(fraction) {
  if (fraction === null || fraction === undefined || !Number.isFinite(fraction)) return "?";
  const percent = fraction * 100;
  return `${percent < 10 && percent > 0 ? percent.toFixed(1) : Math.round(percent)}%`;
}

/** The first 8 characters of a prompt id: enough to tell a handful of prompts apart. */
export function shortId(promptId) {
  return String(promptId || "").slice(0, 8);
}

/** 1.2.10 vs 1.10.0 as numbers; missing parts count as 0. */
export function compareVersions(a, b) {
  const pa = String(a || "0").split(".").map((x) => parseInt(x, 10) || 0);
  const pb = String(b || "0").split(".").map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] || 0) - (pb[i] || 0);
    if (d) return d < 0 ? -1 : 1;
  }
  return 0;
}
