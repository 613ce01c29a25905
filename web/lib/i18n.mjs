// Strings for the governor UI, from the pack's locales/<lang>/main.json ("restorationGovernor" key).
// ComfyUI merges every pack's locales into GET /i18n; the 1.32 frontend keeps its vue-i18n instance
// private, so extension code reads the same catalogue itself and follows the Comfy.Locale setting.

export const NAMESPACE = "restorationGovernor";
export const FALLBACK_LOCALE = "en";

export class Translator {
  /** @param {() => string} getLocale  the frontend's current locale ("en", "zh", "zh-TW", ...) */
  constructor(getLocale = () => FALLBACK_LOCALE) {
    this.getLocale = getLocale;
    this.catalogs = {};
    this.memorySource = "gpu";
  }

  /**
   * What the server gates on: "gpu" or "system" (a CPU server). Strings say {mem} where the
   * language names the two differently (zh: 显存 / 内存); t() fills it unless a caller does.
   */
  setMemorySource(source) {
    this.memorySource = source === "system" ? "system" : "gpu";
  }

  /** @param all  GET /i18n's body: {lang: {...every pack's main.json keys...}} */
  use(all) {
    for (const [lang, messages] of Object.entries(all || {})) {
      if (messages && typeof messages[NAMESPACE] === "object") this.catalogs[lang] = messages[NAMESPACE];
    }
    return this;
  }

  /** Locales tried in order: the exact one, its language ("zh-TW" -> "zh"), then English. */
  chain() {
    let locale = FALLBACK_LOCALE;
    try {
      locale = this.getLocale() || FALLBACK_LOCALE;
    } catch {
      // the setting store may not be ready yet
    }
    const base = String(locale).split("-")[0];
    return [...new Set([locale, base, FALLBACK_LOCALE])];
  }

  locale() {
    return this.chain().find((l) => this.catalogs[l]) || FALLBACK_LOCALE;
  }

  has(key) {
    return this.chain().some((l) => lookup(this.catalogs[l], key) !== undefined);
  }

  /** t("indicator.queued", {position: 3}) -> the string with {placeholders} filled in. */
  t(key, params = {}) {
    for (const lang of this.chain()) {
      const message = lookup(this.catalogs[lang], key);
      if (typeof message !== "string") continue;
      if (message.includes("{mem}") && params?.mem === undefined) {
        params = { ...params, mem: this.t(`memoryWord.${this.memorySource}`) };
      }
      return interpolate(message, params);
    }
    return key;
  }
}

function lookup(catalog, key) {
  let node = catalog;
  for (const part of key.split(".")) {
    if (node === null || typeof node !== "object") return undefined;
    node = node[part];
  }
  return node;
}

export function interpolate(message, params) {
  return message.replace(/\{(\w+)\}/g, (whole, name) =>
    params && params[name] !== undefined && params[name] !== null ? String(params[name]) : whole,
  );
}
