// Tiny DOM builder for the governor UI (no framework: the frontend loads plain ES modules).
// Helper module: .mjs so that ComfyUI does not import it as an extension of its own.

/**
 * h("div", {class: "x", onclick: fn, title: "t"}, child, [children], "text")
 * Attributes starting with "on" become listeners; `dataset`/`style` objects are merged;
 * null/false/undefined children and attributes are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset" || key === "style") {
      Object.assign(el[key], value);
    } else if (key === "class") {
      el.className = value;
    } else if (key in el && typeof value !== "string") {
      el[key] = value; // value, checked, disabled, ...
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace el's children (keeps el itself, so listeners and focus outside it survive). */
export function setChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Set text only when it changed (avoids needless layout work on every poll). */
export function setText(el, text) {
  const value = text == null ? "" : String(text);
  if (el.textContent !== value) el.textContent = value;
}
