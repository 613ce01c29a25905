// The live line as a button in the frontend's own action bar (frontends with the
// `actionBarButtons` extension slot, e.g. 1.58), laid out by the frontend next to Run, so it never
// covers the Job Queue overlay or the toasts. Frontends without the slot (1.32) keep the floating
// line (indicator.mjs), which asks available() which of the two to show.
//
// The frontend reads `actionBarButtons` inside a Vue computed. The extension object itself is not
// reactive, so the button's state lives on the pack's sidebar tab object, which the frontend keeps
// in a reactive store: read through that store, the state is reactive and the button follows it.
// The button belongs to a small second extension, registered once that state is found, so the
// frontend's first read of it is already a tracked one.
//
// 1.32 has an action bar slot too, but its graph editor keeps the floating line (its action bar
// sits in the top menu, which users of 1.32 often hide); the slot is used where the frontend's
// action bar container of 1.58 (data-testid="action-bar-buttons") is on the page.

const STATE_KEY = "restorationGovernorLive";
const SLOT_CONTAINER = '[data-testid="action-bar-buttons"]';

export class ActionBarSlot {
  /**
   * @param tab     the sidebar tab object the pack registers (carries the raw state)
   * @param onOpen  () => void: open the Governor tab
   * @param store   () => the frontend's sidebar tab store, or undefined (then no slot)
   * @param registerExtension  app.registerExtension
   * @param name    the name of the button's extension
   */
  constructor({ tab, onOpen, store, registerExtension, name }) {
    this.tab = tab;
    this.onOpen = onOpen;
    this.store = store;
    this.registerExtension = registerExtension;
    this.name = name;
    tab[STATE_KEY] = { shown: null };
    this.state = null; // the reactive view of tab[STATE_KEY], once found
    this.attached = false;
  }

  /**
   * Register the button's extension when the frontend shows the slot and keeps the tab reactive
   * (the action bar may appear after the pack's setup: tried again on every available()).
   * True when the button is in place.
   */
  attach(doc = document) {
    if (this.attached) return true;
    if (!doc.querySelector(SLOT_CONTAINER)) return false;
    this.state = this.findReactiveState();
    if (!this.state) return false;
    const slot = this;
    this.registerExtension({
      name: this.name,
      get actionBarButtons() {
        return slot.buttons();
      },
    });
    this.attached = true;
    return true;
  }

  /** The extension's `actionBarButtons`: evaluated by the frontend, tracked through the state. */
  buttons() {
    const shown = this.state?.shown;
    if (!shown) return [];
    return [{
      icon: "pi pi-gauge",
      label: shown.text,
      tooltip: shown.tooltip,
      class: `rg-actionbar rg-actionbar-${shown.kind}`,
      onClick: () => this.onOpen(),
    }];
  }

  /** True while the button is in place and the frontend shows its action bar. */
  available(doc = document) {
    return this.attach(doc) && Boolean(doc.querySelector(SLOT_CONTAINER));
  }

  findReactiveState() {
    try {
      const tabs = this.store()?.sidebarTabs;
      const held = Array.isArray(tabs) ? tabs.find((t) => t.id === this.tab.id) : null;
      const state = held?.[STATE_KEY];
      // The same object read through the store is a different (reactive) proxy of it.
      return state && state !== this.tab[STATE_KEY] ? state : null;
    } catch {
      return null;
    }
  }

  /** Show {text, tooltip, kind} in the action bar, or nothing (null). */
  set(shown) {
    if (!this.state) return;
    const now = this.state.shown;
    if (!shown) {
      if (now) this.state.shown = null;
      return;
    }
    if (now && now.text === shown.text && now.tooltip === shown.tooltip && now.kind === shown.kind) return;
    this.state.shown = { text: shown.text, tooltip: shown.tooltip, kind: shown.kind };
  }
}
