// The panel's "servers" section: every ComfyUI server of the cluster (GET /governor/cluster).
// Hidden when the server is not in cluster mode (the route answers 404) or nothing was read yet.

import { h, setChildren, setText } from "./dom.mjs";
import { formatDuration, shortId } from "./format.mjs";

/** "in use / limit" of a server's slots, whatever shape the registry holds (object, number, list). */
export function slotsText(slots) {
  if (slots === null || slots === undefined) return "";
  if (typeof slots === "number") return String(slots);
  if (Array.isArray(slots)) return String(slots.length);
  if (typeof slots === "object") {
    const used = slots.in_use ?? slots.used ?? slots.held;
    const limit = slots.limit ?? slots.max ?? slots.max_concurrent;
    if (used !== undefined && limit !== undefined) return `${used}/${limit}`;
    if (limit !== undefined) return String(limit);
  }
  return "";
}

/** Whether a server counts as alive (the route's `alive`, else its state). */
export function isAlive(server) {
  if (typeof server.alive === "boolean") return server.alive;
  return server.state !== "dead";
}

/** A live server's dispatch state when it is not plain "running" (paused, draining, or as reported). */
function stateText(state, t) {
  if (!state || state === "running") return "";
  return state === "paused" || state === "draining" ? t(`governor.${state}`) : String(state);
}

export class ServersSection {
  constructor(t) {
    this.t = t;
    this.title = h("h3", {});
    this.summary = h("div", { class: "rg-hint" });
    this.list = h("ul", { class: "rg-servers" });
    this.el = h("section", { class: "rg-section rg-cluster", hidden: true }, this.title, this.summary, this.list);
  }

  /** @param cluster the /governor/cluster body, or null (section hidden) */
  update(cluster) {
    const t = this.t;
    const servers = cluster && Array.isArray(cluster.servers) ? cluster.servers : null;
    this.el.hidden = !servers;
    if (!servers) return;
    setText(this.title, t("servers.title"));
    const alive = servers.filter(isAlive).length;
    setText(this.summary, t("servers.summary", { cluster: cluster.cluster ?? "", alive, total: servers.length }));
    setChildren(this.list, servers.map((server) => this.row(server)));
  }

  row(server) {
    const t = this.t;
    const alive = isAlive(server);
    const running = Array.isArray(server.running) ? server.running : server.running ? [server.running] : [];
    const slots = slotsText(server.slots);
    const age = Number(server.heartbeat_age_s);
    const facts = [
      server.gpu ? t("servers.gpu", { gpu: server.gpu }) : "",
      running.length
        ? t("servers.running", { count: running.length, prompt: shortId(String(running[0])) })
        : t("servers.idle"),
      slots ? t("servers.slots", { slots }) : "",
      Number.isFinite(age) ? t("servers.heartbeat", { age: formatDuration(age, t) }) : "",
    ].filter(Boolean);
    const state = alive ? server.state || "running" : "dead";
    return h(
      "li",
      { class: "rg-server", dataset: { serverId: String(server.id ?? ""), alive: String(alive), state } },
      h(
        "div",
        { class: "rg-server-head" },
        h("span", { class: `rg-chip rg-server-${alive ? "alive" : "dead"}` }, t(alive ? "servers.alive" : "servers.dead")),
        h("span", { class: "rg-server-id", title: server.url || "" }, String(server.id ?? "?")),
        h("span", { class: "rg-server-state" }, alive ? stateText(server.state, t) : ""),
      ),
      h("div", { class: "rg-server-meta" }, facts.join(" · ")),
      h("div", { class: "rg-server-classes", title: t("servers.classesHint") }, server.node_classes_hash ? t("servers.classes", { hash: String(server.node_classes_hash).slice(0, 8) }) : ""),
    );
  }
}
