// The small live line shown right after queueing ("Queued — position 3 of 12, about 1 min"),
// kept current by the job book and a one-second tick for the local ETA countdown. It floats at the
// bottom of the canvas, or lives in the frontend's action bar where it has one (action_bar_slot.mjs).

import { h, setText } from "./dom.mjs";
import { formatDuration, formatEta } from "./format.mjs";

/** The indicator's text for a book headline (pure, so the wording is testable). */
export function headlineText(headline, book, governorState, t) {
  if (!headline) return null;
  const { job, kind } = headline;
  let text;
  if (kind === "pending" || kind === "waiting_for_memory") {
    const position = job.position ?? 1;
    const total = Math.max(book.pending || 0, position);
    // No ETA while the queue is paused: nothing starts until an admin resumes it.
    const eta = kind === "pending" && governorState !== "paused" ? formatEta(book.etaNow(job), t) : null;
    if (kind === "waiting_for_memory") text = t("indicator.waitingForMemory", { position, total });
    else if (eta) text = t("indicator.queued", { position, total, eta });
    else text = t("indicator.queuedNoEta", { position, total });
  } else if (kind === "stuck") {
    text = t("indicator.stuck");
  } else {
    const elapsed = job.started_at ? formatDuration(Date.now() / 1000 - job.started_at, t) : t("time.justNow");
    text = job.attempts > 1
      ? t("indicator.runningAttempt", { elapsed, attempt: job.attempts, max: job.max_attempts })
      : t("indicator.running", { elapsed });
  }
  const notes = [];
  if (headline.queuedMore > 0) notes.push(t("indicator.more", { n: headline.queuedMore }));
  if (headline.runningToo > 0) notes.push(t("indicator.alsoRunning", { n: headline.runningToo }));
  const timesOut = kind === "pending" && governorState !== "paused" ? formatEta(book.timeoutNow(job), t) : null;
  if (timesOut) notes.push(t("indicator.timesOut", { eta: timesOut }));
  if (governorState === "paused" || governorState === "draining") notes.push(t(`indicator.governor_${governorState}`));
  return { text, notes: notes.join(" · "), kind };
}

export class LiveIndicator {
  /** @param slot  an ActionBarSlot (optional): used instead of the floating line while available */
  constructor({ t, book, onOpen, isEnabled, governorState, slot = null }) {
    this.t = t;
    this.slot = slot;
    this.book = book;
    this.onOpen = onOpen;
    this.isEnabled = isEnabled;
    this.governorState = governorState;
    this.timer = null;
    this.el = null;
  }

  mount(parent = document.body) {
    this.textEl = h("span", { class: "rg-indicator-text" });
    this.notesEl = h("span", { class: "rg-indicator-notes" });
    this.el = h(
      "div",
      {
        class: "rg-indicator",
        role: "status",
        "aria-live": "polite",
        tabindex: "0",
        hidden: true,
        onclick: () => this.onOpen(),
        onkeydown: (e) => {
          if (e.key === "Enter" || e.key === " ") this.onOpen();
        },
      },
      h("span", { class: "rg-indicator-dot", "aria-hidden": "true" }),
      this.textEl,
      this.notesEl,
    );
    parent.append(this.el);
    this.render();
  }

  render() {
    if (!this.el) return;
    const shown = this.isEnabled() ? headlineText(this.book.headline(), this.book, this.governorState(), this.t) : null;
    if (!shown) {
      this.el.hidden = true;
      this.slot?.set(null);
      this.stopTicking();
      return;
    }
    this.startTicking();
    if (this.slot?.available()) {
      this.el.hidden = true;
      const tooltip = [shown.notes, this.t("indicator.open")].filter(Boolean).join(" — ");
      this.slot.set({ text: shown.text, tooltip, kind: shown.kind });
      return;
    }
    this.slot?.set(null);
    this.el.hidden = false;
    this.el.dataset.kind = shown.kind;
    this.el.title = this.t("indicator.open");
    setText(this.textEl, shown.text);
    setText(this.notesEl, shown.notes);
    this.notesEl.hidden = !shown.notes;
  }

  startTicking() {
    if (!this.timer) this.timer = setInterval(() => this.render(), 1000);
  }

  stopTicking() {
    clearInterval(this.timer);
    this.timer = null;
  }

  destroy() {
    this.stopTicking();
    this.el?.remove();
    this.el = null;
  }
}
