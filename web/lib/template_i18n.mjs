// The pack's workflow templates (example_workflows/*.json) in the editor's language. Text stored in a
// workflow (a note's body, a node's or group's title) is no locale string the frontend translates, so
// the extension rewrites it while a graph loads (the beforeConfigureGraph hook, frontends 1.32 and 1.58).
//
// The texts come from GET /i18n, section "restorationTemplates" of locales/<lang>/main.json: one entry
// per template (keyed by its file name), one text per element (group, noteTitle, note, loadTitle, ...).
// The English entries are the templates' own texts (tests/unit/test_template_locale.py keeps them equal).
// Only a text that is still exactly one language's shipped text is replaced: an edited note stays as
// the user wrote it. A template is recognised by its note or its group title, in any language, so a
// user's own "How to use" note elsewhere is never touched.

export const SECTION = "restorationTemplates";
/** Elements that recognise a template; titles like "How to use" are too common to do so. */
export const ANCHORS = ["note", "group"];
const NOTE_TYPES = new Set(["MarkdownNote", "Note"]);

export class TemplateTexts {
  /** @param catalogue  GET /i18n's body: {lang: {..., restorationTemplates: {template: {element: text}}}} */
  constructor(catalogue) {
    this.byLang = {};
    for (const [lang, messages] of Object.entries(catalogue || {})) {
      const section = messages?.[SECTION];
      if (section && typeof section === "object") this.byLang[lang] = section;
    }
  }

  /** The template names some language ships. */
  templates() {
    return [...new Set(Object.values(this.byLang).flatMap((section) => Object.keys(section)))];
  }

  /** {text: element} of one template, over every language. */
  variants(template) {
    const out = new Map();
    for (const section of Object.values(this.byLang)) {
      for (const [element, text] of Object.entries(section[template] || {})) {
        if (typeof text === "string") out.set(text, element);
      }
    }
    return out;
  }

  /** The text of one element in the first language of `languages` that has it, or undefined. */
  text(template, element, languages) {
    for (const lang of languages) {
      const text = this.byLang[lang]?.[template]?.[element];
      if (typeof text === "string") return text;
    }
    return undefined;
  }

  /**
   * Rewrites, in place, the shipped texts of every recognised template in a workflow's JSON
   * (`nodes[].title`, the first widget value of Note/MarkdownNote nodes, `groups[].title`).
   * @param graphData  a workflow as the frontend loads it (LiteGraph's serialised graph)
   * @param languages  the locales to try in order, e.g. ["zh-CN", "zh", "en"]
   * @returns the number of texts replaced
   */
  localize(graphData, languages) {
    const spots = textSpots(graphData);
    let replaced = 0;
    for (const template of this.templates()) {
      const variants = this.variants(template);
      const recognised = spots.some((spot) => ANCHORS.includes(variants.get(spot.get())));
      if (!recognised) continue;
      for (const spot of spots) {
        const element = variants.get(spot.get());
        if (element === undefined) continue;
        const wanted = this.text(template, element, languages);
        if (wanted === undefined || wanted === spot.get()) continue;
        spot.set(wanted);
        replaced += 1;
      }
    }
    return replaced;
  }
}

/** Getter/setter pairs for each text of a workflow that a template may ship. */
function textSpots(graphData) {
  const spots = [];
  for (const node of Array.isArray(graphData?.nodes) ? graphData.nodes : []) {
    if (!node || typeof node !== "object") continue;
    if (typeof node.title === "string") spots.push(field(node, "title"));
    const values = node.widgets_values;
    if (NOTE_TYPES.has(node.type) && Array.isArray(values) && typeof values[0] === "string") spots.push(field(values, 0));
  }
  for (const group of Array.isArray(graphData?.groups) ? graphData.groups : []) {
    if (group && typeof group.title === "string") spots.push(field(group, "title"));
  }
  return spots;
}

function field(owner, key) {
  return { get: () => owner[key], set: (value) => (owner[key] = value) };
}
