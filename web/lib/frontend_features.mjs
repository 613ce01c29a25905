// What the running ComfyUI frontend does differently, decided once from what it shows at runtime.
// The pack runs on the core's own frontend (1.32) and on current ones (1.58); each difference it
// depends on has one verdict here, with the evidence it rests on.

import { compareVersions } from "./format.mjs";

/** The first frontend that keeps every pack's strings when it loads a locale's own bundle
 *  (upstream "preserve custom nodes i18n data when locales are lazily loaded", Dec 2025). */
export const I18N_FIXED_IN = "1.34.0";

/** Frontend lines whose error dialog listener is registered after extensions are imported
 *  (1.32: app.setup() runs loadExtensions() before addApiUpdateHandlers()). Read in their
 *  source; a line is only listed once it has been read there. */
const DIALOG_BOUND_AFTER_EXTENSIONS = ["1.32"];

/** The frontend's version ("1.58.1"), or null when it does not say (frontends before 1.2). */
export function frontendVersion(win = globalThis) {
  const version = win?.__COMFYUI_FRONTEND_VERSION__;
  return typeof version === "string" && version ? version : null;
}

/**
 * May the pack hold ComfyUI's execution_error back (stop it, hand it on later)? Only when its own
 * listener provably runs before the one that shows the error; otherwise holding cannot hide
 * anything, and handing the event on again would show the error twice.
 *
 * Call before registering the pack's listener.
 * @param api      the frontend's ComfyApi
 * @param version  frontendVersion()
 * @returns {{hold: boolean, reason: string}}
 */
export function errorHoldVerdict(api, version) {
  const registered = api?._registered; // 1.58: the set of event types someone listens to
  if (registered instanceof Set) {
    return registered.has("execution_error")
      ? { hold: false, reason: "the frontend listens to execution_error before extensions load" }
      : { hold: true, reason: "no execution_error listener before the pack's" };
  }
  const line = version ? version.split(".").slice(0, 2).join(".") : null;
  if (line && DIALOG_BOUND_AFTER_EXTENSIONS.includes(line)) {
    return { hold: true, reason: `frontend ${line} binds its error dialog after extensions load` };
  }
  return { hold: false, reason: "listener order unknown on this frontend" };
}

/** Does this frontend drop the packs' strings of a non-English locale (the 1.32 bug)? */
export function dropsPackStrings(version) {
  return version === null || compareVersions(version, I18N_FIXED_IN) < 0;
}
