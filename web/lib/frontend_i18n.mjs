// Keeps this pack's strings inside the frontend's own vue-i18n messages (sidebar tab title and
// tooltip, setting names, setting categories, the names and tooltips of the pack's nodes), which
// the frontend translates itself. Used only on frontends with the bug (frontend_features.mjs).
//
// Why: in frontend 1.32 GraphCanvas merges every pack's GET /i18n strings into vue-i18n, then
// GraphView's loadLocale() *replaces* (setLocaleMessage) a non-English locale's messages once its
// own bundle arrives, dropping every pack's strings for that locale. We put ours back when missing.

import { NAMESPACE } from "./i18n.mjs";

const PROBE_KEY = `${NAMESPACE}.tab.title`;

/**
 * The strings this pack owns in GET /i18n's body, per language.
 * @param nodeClasses  the pack's node class names (their nodeDefs entries are the pack's)
 */
export function ownedMessages(all, settingPrefix, categoryKeys, nodeClasses = []) {
  const out = {};
  for (const [lang, messages] of Object.entries(all || {})) {
    if (!messages || typeof messages[NAMESPACE] !== "object") continue;
    const settings = Object.fromEntries(
      Object.entries(messages.settings || {}).filter(([key]) => key.startsWith(settingPrefix)),
    );
    const categories = Object.fromEntries(
      Object.entries(messages.settingsCategories || {}).filter(([key]) => categoryKeys.includes(key)),
    );
    const nodeDefs = Object.fromEntries(
      Object.entries(messages.nodeDefs || {}).filter(([key]) => nodeClasses.includes(key)),
    );
    out[lang] = { [NAMESPACE]: messages[NAMESPACE], settings, settingsCategories: categories, nodeDefs };
  }
  return out;
}

/** vue-i18n's global composer of the running frontend, or null (then nothing is repaired). */
export function findGlobalComposer(doc = document) {
  try {
    const host = doc.getElementById("vue-app") || doc.querySelector("[data-v-app]");
    const provides = host?.__vue_app__?._context?.provides;
    if (!provides) return null;
    for (const key of Reflect.ownKeys(provides)) {
      const candidate = provides[key];
      if (candidate?.global && typeof candidate.global.mergeLocaleMessage === "function") return candidate.global;
    }
  } catch {
    // a frontend without this structure: its own merge of GET /i18n is all there is
  }
  return null;
}

/** The class names of the nodes a pack folder defines, from GET /object_info's python_module. */
export function packNodeClasses(nodeDefs, packFolder) {
  const module = `custom_nodes.${packFolder}`;
  return Object.values(nodeDefs || {})
    .filter((def) => def && def.python_module === module)
    .map((def) => def.name);
}

export class FrontendMessages {
  constructor(messagesByLang) {
    this.messagesByLang = messagesByLang;
    this.composer = null;
  }

  /** Merge our strings into the active locale when they are missing; true when it merged. */
  repair() {
    this.composer = this.composer || findGlobalComposer();
    const composer = this.composer;
    if (!composer) return false;
    try {
      const locale = typeof composer.locale === "string" ? composer.locale : composer.locale?.value;
      const messages = this.messagesByLang[locale];
      if (!locale || !messages || composer.te(PROBE_KEY, locale)) return false;
      composer.mergeLocaleMessage(locale, messages);
      return true;
    } catch {
      return false;
    }
  }
}
