// reqo's console: one page, no build step. It reads the console's JSON (/-/console/api/) and
// the database's own Recombee API, both authenticated by the session cookie and the
// X-Reqo-Console header (server/console/session.py).
"use strict";

const API = "/-/console/api";
const HEADERS = { "X-Reqo-Console": "1" };
const COLORS = ["#3451b2", "#e5484d", "#30a46c", "#f76b15", "#8e4ec6", "#0090ff", "#ad7f58"];
const PREVIEWABLE = {
  "items-to-user": { user: true, item: false },
  "items-to-item": { user: false, item: true },
  "users-to-user": { user: true, item: false },
  "users-to-item": { user: false, item: true },
  "search-items": { user: true, item: false, search: true },
};

const state = { overview: null, database: null, timer: null, itemProperties: null };

// -- helpers --------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// replaceChildren and append, leaving out null, undefined and false (which they would print).
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function add(node, ...children) {
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function request(url, options) {
  const response = await fetch(url, {
    credentials: "same-origin",
    ...options,
    headers: { ...HEADERS, ...((options && options.headers) || {}) },
  });
  if (response.status === 401) {
    location.href = "/-/console/login";
    throw new ApiError(401, { error: "the session has ended" });
  }
  const body = response.headers.get("content-type")?.includes("json")
    ? await response.json()
    : await response.text();
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

const consoleApi = (path, params) => request(`${API}${path}${query(params || {})}`);
const databaseApi = (path, params, options) =>
  request(`/${encodeURIComponent(state.database)}${path}${query(params || {})}`, options);
const seg = (text) => encodeURIComponent(text);

function number(value, digits = 0) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}
const percent = (value) => (value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)} %`);
const when = (epoch) => (epoch ? new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19) : "–");

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function problem(error) {
  return el("p", { class: "problem", role: "alert" }, error.message || String(error));
}

function table(headers, rows, attrs) {
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      attrs || {},
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((row) => el("tr", {}, row.map((cell) => el("td", {}, cell))))),
    ),
  );
}

function card(title, ...children) {
  return el("section", { class: "card" }, title ? el("h2", {}, title) : null, ...children);
}

function confirmed(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

// -- charts ---------------------------------------------------------------------------------

// A line chart of series [{name, points: [[t, value]], color}], time on x.
// `pointSeconds`: the time one point stands for (a lone point is drawn in that span).
function lineChart(title, series, format, pointSeconds = 60) {
  const width = 560;
  const height = 200;
  const pad = { left: 58, right: 12, top: 12, bottom: 26 };
  const points = series.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
  const figure = el("figure", { class: "chart" }, el("figcaption", {}, title));
  if (points.length === 0) {
    figure.append(el("p", { class: "empty" }, "no data yet"));
    return figure;
  }
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  if (x0 === x1) [x0, x1] = [x0 - pointSeconds / 2, x1 + pointSeconds / 2];
  let y1 = Math.max(...ys, 0);
  const y0 = Math.min(...ys, 0);
  if (y1 === y0) y1 = y0 + 1;
  const x = (t) => pad.left + ((t - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - ((v - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  for (let i = 0; i <= 4; i++) {
    const value = y0 + ((y1 - y0) * i) / 4;
    chart.append(
      svg("line", { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value), class: "grid" }),
      svg("text", { x: pad.left - 6, y: y(value) + 4, class: "tick", "text-anchor": "end" }, format(value)),
    );
  }
  for (const [t, anchor] of [[x0, "start"], [(x0 + x1) / 2, "middle"], [x1, "end"]]) {
    const span = x1 - x0;
    const [from, to] = span > 2 * 86400 ? [5, 10] : span > 900 ? [11, 16] : [11, 19];
    const label = new Date(t * 1000).toISOString().slice(from, to);
    chart.append(svg("text", { x: x(t), y: height - 8, class: "tick", "text-anchor": anchor }, label));
  }
  series.forEach((s, index) => {
    const color = s.color || COLORS[index % COLORS.length];
    const shown = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
    if (shown.length === 1) {
      chart.append(svg("circle", { cx: x(shown[0][0]), cy: y(shown[0][1]), r: 3, fill: color }));
    } else if (shown.length > 1) {
      const path = shown.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
      chart.append(svg("path", { d: path, fill: "none", stroke: color, "stroke-width": 2 }));
    }
  });
  figure.append(chart);
  if (series.length > 1) {
    figure.append(
      el(
        "div",
        { class: "legend" },
        series.map((s, i) =>
          el("span", {}, el("i", { style: `background:${s.color || COLORS[i % COLORS.length]}` }), s.name),
        ),
      ),
    );
  }
  return figure;
}

function bars(rows) {
  // rows: [{label, share}] as horizontal bars
  return el(
    "div",
    { class: "bars" },
    rows.map((row, i) =>
      el(
        "div",
        { class: "bar-row" },
        el("span", { class: "bar-label" }, row.label),
        el(
          "span",
          { class: "bar" },
          el("i", { style: `width:${Math.max(0, Math.min(1, row.share)) * 100}%;background:${COLORS[i % COLORS.length]}` }),
        ),
        el("span", { class: "bar-value" }, percent(row.share)),
      ),
    ),
  );
}

// -- item cards -----------------------------------------------------------------------------

async function itemProperties() {
  if (!state.itemProperties || state.itemProperties.database !== state.database) {
    const listed = await databaseApi("/items/properties/list/");
    state.itemProperties = { database: state.database, list: listed };
  }
  return state.itemProperties.list;
}

function imageProperty(properties) {
  const typed = properties.find((p) => p.type === "image" || p.type === "imageList");
  return typed ? typed.name : null;
}

function defaultShown(properties) {
  const strings = properties.filter((p) => p.type === "string" || p.type === "set").map((p) => p.name);
  return strings.slice(0, 2);
}

function itemCard(id, values, shown, image, extra) {
  let picture = null;
  if (image && values) {
    const source = Array.isArray(values[image]) ? values[image][0] : values[image];
    if (source) picture = el("img", { src: source, alt: "", loading: "lazy" });
  }
  return el(
    "a",
    { class: "item-card", href: `#/data/item/${seg(id)}` },
    picture,
    el("strong", {}, id),
    shown.map((name) => {
      const value = values ? values[name] : undefined;
      if (value === undefined || value === null) return null;
      return el("span", { class: "prop" }, Array.isArray(value) ? value.join(", ") : String(value));
    }),
    extra || null,
  );
}

// A user's interactions, newest first, with the shown properties of each item.
function timeline(history, items, shown) {
  return el(
    "ol",
    { class: "timeline" },
    history.map((h) =>
      el(
        "li",
        {},
        el("a", { href: `#/data/item/${seg(h.itemId)}` }, h.itemId),
        " ",
        shown.map((name) => items[h.itemId]?.[name]).filter((v) => v !== undefined && v !== null).join(" · "),
        el("span", { class: "muted" }, ` ${h.type}${h.rating !== undefined ? ` ${h.rating}` : ""} · ${when(h.timestamp)}`),
      ),
    ),
  );
}

// One recommendation of a scenario: a user (Users to …) or an item card.
function recommendationCard(endpoint, recommendation, shown, image) {
  if (endpoint.startsWith("users")) {
    return el("a", { class: "item-card", href: `#/data/user/${seg(recommendation.id)}` }, el("strong", {}, recommendation.id));
  }
  return itemCard(recommendation.id, recommendation.values, shown, image);
}

// -- pages ----------------------------------------------------------------------------------

async function overviewPage(view) {
  const data = await consoleApi("/overview");
  state.overview = data;
  fill(view,
    el(
      "div",
      { class: "page-head" },
      el("h1", {}, "Overview"),
      el("span", { class: data.ready ? "badge ok" : "badge warn", id: "readiness" }, data.ready ? "ready" : "not ready"),
    ),
  );
  for (const db of data.databases) {
    const traffic = db.traffic ? db.traffic.points : [];
    const series = (key) => traffic.map((p) => [p.t, p[key]]);
    const figures = el(
      "div",
      { class: "figures" },
      [
        ["items", db.items],
        ["users", db.users],
        ["interactions", db.interactions],
        ["recommendations logged", db.recommendations],
      ].map(([label, value]) => el("div", { class: "figure" }, el("b", {}, number(value)), el("span", {}, label))),
    );
    const charts = el(
      "div",
      { class: "charts" },
      lineChart("requests / s", [{ name: "rate", points: series("rate") }], (v) => number(v, 1)),
      lineChart(
        "latency (ms)",
        [
          { name: "p50", points: series("p50") },
          { name: "p95", points: series("p95") },
          { name: "p99", points: series("p99") },
        ],
        (v) => number(v, 1),
      ),
      lineChart(
        "errors (share of requests)",
        [
          { name: "5xx", points: series("serverErrorRate"), color: COLORS[1] },
          { name: "4xx", points: series("clientErrorRate"), color: COLORS[3] },
        ],
        percent,
      ),
    );
    const models = table(
      ["model", "algorithm", "serving", "trained", "training", "state"],
      db.models.map((m) => [
        m.model,
        m.algorithm,
        el("code", {}, m.serving || "fallback"),
        m.live ? m.live.savedAt : "–",
        m.live && m.live.training
          ? `${number(m.live.training.seconds, 1)} s · ${number(m.live.training.users)} users · ${number(m.live.training.interactions)} interactions`
          : "–",
        m.awaitingTraining ? el("span", { class: "badge warn" }, "awaiting training") : el("span", { class: "badge ok" }, "trained"),
      ]),
    );
    add(view,
      card(
        `Database ${db.name}`,
        figures,
        db.awaiting.length ? el("p", { class: "problem" }, `waiting for versions of: ${db.awaiting.join(", ")}`) : null,
        el("h3", {}, `Traffic, last hour${data.metricsEnabled ? "" : " (metrics are off)"}`),
        charts,
        el("h3", {}, "Models"),
        models,
      ),
    );
  }
  const interval = data.databases[0]?.traffic?.interval || 10;
  state.timer = setTimeout(() => route(), Math.max(2, interval) * 1000);
}

async function scenariosPage(view, params) {
  const bucket = params.get("bucket") || "hour";
  const data = await consoleApi(`/${seg(state.database)}/scenarios`, { bucket });
  const picker = el(
    "select",
    { "aria-label": "bucket", onchange: (e) => (location.hash = `#/scenarios?bucket=${e.target.value}`) },
    ["minute", "hour", "day"].map((b) => el("option", { value: b, selected: b === bucket }, `per ${b}`)),
  );
  fill(view, el("div", { class: "page-head" }, el("h1", {}, "Scenarios"), picker));
  if (data.scenarios.length === 0) add(view, card(null, el("p", {}, "No scenario is configured or logged.")));
  for (const scenario of data.scenarios) {
    const variants = scenario.variants.length ? scenario.variants : [];
    const label = (v) => v.variant || "all traffic";
    const seriesOf = (key) => variants.map((v) => ({ name: label(v), points: v.points.map((p) => [p.t, p[key]]) }));
    const totals = table(
      ["variant", "recommendations", "clicks", "CTR", "conversion", "revenue"],
      variants.map((v) => [
        label(v),
        number(v.totals?.recommendations ?? 0),
        number(v.totals?.clicks ?? 0),
        percent(v.totals?.ctr),
        percent(v.totals?.conversion),
        number(v.totals?.revenue ?? 0, 2),
      ]),
    );
    const bandit = scenario.bandit
      ? el(
          "div",
          {},
          el("h3", {}, `Traffic shares (${scenario.bandit.method || "bandit"})`),
          bars(Object.entries(scenario.bandit.variants).map(([name, v]) => ({ label: name, share: v.share }))),
        )
      : null;
    add(view,
      card(
        scenario.name,
        el(
          "p",
          { class: "muted" },
          scenario.configured ? `${scenario.endpoint} · model ${scenario.model || "default"}` : "in the log only (not configured)",
        ),
        scenario.settings
          ? el(
              "dl",
              { class: "settings" },
              Object.entries(scenario.settings)
                .filter(([, value]) => value !== null && value !== "")
                .map(([key, value]) => el("div", {}, el("dt", {}, key), el("dd", {}, el("code", {}, String(value))))),
            )
          : null,
        totals,
        el(
          "div",
          { class: "charts" },
          lineChart("recommendations served", seriesOf("recommendations"), (v) => number(v, 1), data.bucketSeconds),
          lineChart("CTR", seriesOf("ctr"), percent, data.bucketSeconds),
          lineChart("conversion", seriesOf("conversion"), percent, data.bucketSeconds),
          lineChart("revenue", seriesOf("revenue"), (v) => number(v, 2), data.bucketSeconds),
        ),
        bandit,
        scenario.yaml ? el("details", {}, el("summary", {}, "Configuration (read-only: the YAML is the source of truth)"), el("pre", { class: "yaml" }, scenario.yaml)) : null,
      ),
    );
  }
}

// A ReQL editor: a textarea checked against the server as one types; the report's caret
// shows where the problem is.
function reqlEditor(label, purpose, endpointOf, initial, onChange) {
  const input = el("textarea", { rows: 2, spellcheck: "false", "aria-label": label, class: "reql" });
  input.value = initial || "";
  const report = el("pre", { class: "reql-error", hidden: true, role: "status" });
  const editor = { input, report, valid: true };
  const check = debounce(async () => {
    const expression = input.value;
    if (!expression.trim()) {
      report.hidden = true;
      editor.valid = true;
      input.classList.remove("invalid");
      return;
    }
    try {
      const found = await consoleApi(`/${seg(state.database)}/reql`, { expression, purpose, endpoint: endpointOf() });
      if (input.value !== expression) return; // typed on meanwhile
      editor.valid = found.ok;
      input.classList.toggle("invalid", !found.ok);
      report.hidden = found.ok;
      if (!found.ok) report.textContent = found.report;
    } catch (error) {
      report.hidden = false;
      report.textContent = error.message;
    }
  }, 200);
  input.addEventListener("input", () => {
    check();
    if (onChange) onChange();
  });
  editor.check = check;
  editor.node = el("label", { class: "field" }, el("span", {}, label), input, report);
  if (initial) check();
  return editor;
}

function previewablesOf() {
  return (state.overview?.scenarios || []).filter((s) => PREVIEWABLE[s.endpoint]);
}

function recommendationPath(endpoint, user, item) {
  switch (endpoint) {
    case "items-to-user": return `/recomms/users/${seg(user)}/items/`;
    case "items-to-item": return `/recomms/items/${seg(item)}/items/`;
    case "users-to-user": return `/recomms/users/${seg(user)}/users/`;
    case "users-to-item": return `/recomms/items/${seg(item)}/users/`;
    case "search-items": return `/search/users/${seg(user)}/items/`;
    default: throw new Error(`the preview does not show ${endpoint} scenarios`);
  }
}

async function recommendFor(scenario, context, settings) {
  const needs = PREVIEWABLE[scenario.endpoint];
  if (needs.user && !context.user) throw new Error(`${scenario.name} recommends to a user: pick one`);
  if (needs.item && !context.item) throw new Error(`${scenario.name} needs a context item: pick one`);
  const params = {
    scenario: scenario.name,
    count: context.count || 10,
    returnProperties: "true",
    filter: settings.filter,
    booster: settings.booster,
  };
  if (needs.search) params.searchQuery = context.search || "";
  if (needs.item && context.user && scenario.endpoint === "items-to-item") params.targetUserId = context.user;
  return databaseApi(recommendationPath(scenario.endpoint, context.user, context.item), params);
}

async function previewPage(view, params) {
  const scenarios = previewablesOf();
  const properties = await itemProperties();
  const image = imageProperty(properties);
  const context = {
    user: params.get("user") || "",
    item: params.get("item") || "",
    search: params.get("q") || "",
    count: Number(params.get("count") || 10),
  };
  let shown = (params.get("show") || "").split(",").filter(Boolean);
  if (!shown.length) shown = defaultShown(properties);

  const userInput = el("input", { value: context.user, placeholder: "user id, or a filter such as 'age' < 20", "aria-label": "user", list: "user-choices" });
  const userChoices = el("datalist", { id: "user-choices" });
  const itemInput = el("input", { value: context.item, placeholder: "item id", "aria-label": "context item" });
  const searchInput = el("input", { value: context.search, placeholder: "search query (search scenarios)", "aria-label": "search query" });
  const found = el("div", { class: "found" });
  const findUsers = debounce(async () => {
    const text = userInput.value.trim();
    if (!text) return fill(found, );
    try {
      const result = await consoleApi(`/${seg(state.database)}/find`, { entity: "users", q: text });
      fill(userChoices, ...result.found.map((u) => el("option", { value: u.userId })));
      if (result.by === "filter") {
        fill(found,
          el("span", { class: "muted" }, `${result.found.length} users match: `),
          ...result.found.map((u) =>
            el("button", { class: "chip", type: "button", onclick: () => { userInput.value = u.userId; fill(found, ); } }, u.userId),
          ),
        );
      } else fill(found, );
    } catch (error) {
      fill(found, problem(error));
    }
  }, 250);
  userInput.addEventListener("input", findUsers);

  const propertyPicker = el(
    "div",
    { class: "properties" },
    el("span", { class: "muted" }, "show: "),
    properties
      .filter((p) => p.type !== "image" && p.type !== "imageList")
      .map((p) =>
        el("label", { class: "check" }, el("input", { type: "checkbox", value: p.name, checked: shown.includes(p.name) }), p.name),
      ),
  );

  const makePane = (index, initialScenario, filter, booster) => {
    const select = el(
      "select",
      { "aria-label": `scenario ${index}` },
      scenarios.map((s) => el("option", { value: s.name, selected: s.name === initialScenario }, `${s.name} (${s.endpoint})`)),
    );
    const endpointOf = () => scenarios.find((s) => s.name === select.value)?.endpoint || "items-to-user";
    const filterEditor = reqlEditor("filter", "filter", endpointOf, filter);
    const boosterEditor = reqlEditor("booster", "booster", endpointOf, booster);
    select.addEventListener("change", () => {
      filterEditor.check();
      boosterEditor.check();
    });
    const results = el("div", { class: "results", "data-pane": index });
    const pane = el(
      "section",
      { class: "card pane", id: `pane-${index}` },
      el("h2", {}, index === 1 ? "A" : "B"),
      el("label", { class: "field" }, el("span", {}, "scenario"), select),
      filterEditor.node,
      boosterEditor.node,
      results,
    );
    return { pane, select, filterEditor, boosterEditor, results };
  };
  const first = scenarios[0]?.name;
  const panes = [makePane(1, params.get("a") || first, params.get("filter") || "", params.get("booster") || "")];
  const comparing = params.get("b") !== null;
  const compareBox = el("input", { type: "checkbox", id: "compare", checked: comparing });
  panes.push(makePane(2, params.get("b") || scenarios[1]?.name || first, params.get("filterB") || "", params.get("boosterB") || ""));
  panes[1].pane.hidden = !comparing;
  compareBox.addEventListener("change", () => (panes[1].pane.hidden = !compareBox.checked));

  const history = el("section", { class: "card history" }, el("h2", {}, "User's recent history"), el("p", { class: "muted" }, "pick a user"));

  async function showHistory() {
    const user = userInput.value.trim();
    if (!user || user.includes("'")) return;
    try {
      const found = await consoleApi(`/${seg(state.database)}/users/${seg(user)}`);
      fill(history,
        el("h2", {}, `History of user ${user}`),
        found.history.length === 0 ? el("p", { class: "muted" }, "no interactions") : null,
        timeline(found.history.slice(0, 20), found.items, shown),
      );
    } catch (error) {
      fill(history, el("h2", {}, "User's recent history"), problem(error));
    }
  }

  async function run() {
    context.user = userInput.value.trim();
    context.item = itemInput.value.trim();
    context.search = searchInput.value;
    shown = [...propertyPicker.querySelectorAll("input:checked")].map((i) => i.value);
    const active = panes.filter((p) => !p.pane.hidden);
    await Promise.all(
      active.map(async (pane) => {
        const scenario = scenarios.find((s) => s.name === pane.select.value);
        fill(pane.results, el("p", { class: "muted" }, "…"));
        try {
          const answer = await recommendFor(scenario, context, {
            filter: pane.filterEditor.input.value,
            booster: pane.boosterEditor.input.value,
          });
          fill(pane.results,
            el("p", { class: "muted" }, `${answer.recomms.length} recommendations`),
            el("div", { class: "cards" }, answer.recomms.map((r) => recommendationCard(scenario.endpoint, r, shown, image))),
          );
        } catch (error) {
          const report = error.body && error.body.error;
          fill(pane.results, report ? el("pre", { class: "reql-error" }, report) : problem(error));
        }
      }),
    );
    showHistory();
  }

  const show = el("button", { type: "submit", id: "show" }, "Show recommendations");
  const form = el(
    "form",
    {
      class: "card controls",
      onsubmit: (event) => {
        event.preventDefault();
        run();
      },
    },
    el(
      "div",
      { class: "row" },
      el("label", { class: "field" }, el("span", {}, "user"), userInput, userChoices),
      el("label", { class: "field" }, el("span", {}, "context item"), itemInput),
      el("label", { class: "field" }, el("span", {}, "search"), searchInput),
    ),
    found,
    propertyPicker,
    el("div", { class: "row" }, el("label", { class: "check" }, compareBox, "compare two scenarios or settings side by side"), show),
  );
  fill(view,
    el("div", { class: "page-head" }, el("h1", {}, "Preview")),
    scenarios.length === 0 ? card(null, el("p", {}, "No scenario the preview can show is configured.")) : null,
    form,
    el("div", { class: "preview" }, el("div", { class: "panes" }, panes.map((p) => p.pane)), history),
  );
  if (context.user || context.item) await run();
}

async function dataPage(view, params) {
  const entity = params.get("entity") === "users" ? "users" : "items";
  const offset = Number(params.get("offset") || 0);
  const count = 20;
  const filter = params.get("filter") || "";
  const go = (changes) => {
    const next = new URLSearchParams({ entity, offset: String(offset), filter });
    for (const [key, value] of Object.entries(changes)) next.set(key, value);
    location.hash = `#/data?${next}`;
  };
  const editor = reqlEditor("filter (ReQL)", "filter", () => `list-${entity}`, filter);
  const tabs = el(
    "div",
    { class: "tabs" },
    ["items", "users"].map((name) =>
      el("button", { type: "button", class: name === entity ? "tab active" : "tab", onclick: () => go({ entity: name, offset: "0", filter: "" }) }, name),
    ),
  );
  const form = el(
    "form",
    {
      class: "card controls",
      onsubmit: (event) => {
        event.preventDefault();
        go({ filter: editor.input.value, offset: "0" });
      },
    },
    tabs,
    editor.node,
    el("button", { type: "submit" }, "Apply"),
  );
  fill(view, el("div", { class: "page-head" }, el("h1", {}, "Data")), form);
  let rows;
  try {
    rows = await databaseApi(`/${entity}/list/`, { filter, offset, count: count + 1, returnProperties: "true" });
  } catch (error) {
    add(view, card(null, error.body?.error ? el("pre", { class: "reql-error" }, error.body.error) : problem(error)));
    return;
  }
  const more = rows.length > count;
  rows = rows.slice(0, count);
  const idField = entity === "items" ? "itemId" : "userId";
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)).filter((k) => k !== idField))].slice(0, 6);
  const listing = table(
    [idField, ...columns],
    rows.map((r) => [
      el("a", { href: `#/data/${entity === "items" ? "item" : "user"}/${seg(r[idField])}` }, r[idField]),
      ...columns.map((c) => (r[c] === null || r[c] === undefined ? "" : Array.isArray(r[c]) ? r[c].join(", ") : String(r[c]))),
    ]),
    { class: "listing" },
  );
  add(view,
    card(
      null,
      listing,
      el(
        "div",
        { class: "row pager" },
        el("button", { type: "button", disabled: offset === 0, onclick: () => go({ offset: String(Math.max(0, offset - count)) }) }, "← previous"),
        el("span", { class: "muted" }, rows.length ? `${offset + 1}–${offset + rows.length}` : "nothing matches"),
        el("button", { type: "button", disabled: !more, onclick: () => go({ offset: String(offset + count) }) }, "next →"),
      ),
    ),
  );
}

function valuesTable(values) {
  return table(
    ["property", "value"],
    Object.entries(values).map(([k, v]) => [k, v === null ? "–" : Array.isArray(v) ? v.join(", ") : String(v)]),
  );
}

async function itemPage(view, id) {
  const [found, properties] = await Promise.all([consoleApi(`/${seg(state.database)}/items/${seg(id)}`), itemProperties()]);
  const image = imageProperty(properties);
  const shown = defaultShown(properties);
  const near = el("div", { id: "neighbours" }, el("p", { class: "muted" }, "…"));
  fill(view,
    el("div", { class: "page-head" }, el("h1", {}, `Item ${id}`), el("a", { href: `#/preview?item=${seg(id)}&a=${seg(previewablesOf().find((s) => s.endpoint === "items-to-item")?.name || "")}` }, "preview related items →")),
    el(
      "div",
      { class: "columns" },
      card("Properties", valuesTable(found.values)),
      card(
        "Interactions",
        table(["type", "count"], Object.entries(found.interactions).map(([k, v]) => [k, number(v)])),
        el("h3", {}, "Latest"),
        table(["user", "type", "when"], found.recent.slice(0, 15).map((r) => [el("a", { href: `#/data/user/${seg(r.userId)}` }, r.userId), r.type, when(r.timestamp)])),
      ),
    ),
    card("Nearest items by each model", near),
  );
  try {
    const result = await consoleApi(`/${seg(state.database)}/items/${seg(id)}/neighbours`);
    fill(near,
      ...result.models.map((m) =>
        el(
          "div",
          { class: "model-row" },
          el("h3", {}, m.model),
          m.error
            ? el("p", { class: "muted" }, m.error)
            : m.ids.length === 0
              ? el("p", { class: "muted" }, "no items: this model does not relate items to this one")
              : el("div", { class: "cards" }, m.ids.map((i) => itemCard(i, result.items[i], shown, image))),
        ),
      ),
    );
  } catch (error) {
    fill(near, problem(error));
  }
}

async function userPage(view, id) {
  const [found, properties] = await Promise.all([consoleApi(`/${seg(state.database)}/users/${seg(id)}`), itemProperties()]);
  const image = imageProperty(properties);
  const shown = defaultShown(properties);
  const scenarios = previewablesOf().filter((s) => PREVIEWABLE[s.endpoint].user && !PREVIEWABLE[s.endpoint].search);
  const shows = el("div", { id: "user-scenarios" });
  fill(view,
    el("div", { class: "page-head" }, el("h1", {}, `User ${id}`), el("a", { href: `#/preview?user=${seg(id)}` }, "open in the preview →")),
    el(
      "div",
      { class: "columns" },
      card("Properties", valuesTable(found.values), el("h3", {}, "Interactions"), table(["type", "count"], Object.entries(found.interactions).map(([k, v]) => [k, number(v)]))),
      card(
        "History",
        timeline(found.history, found.items, shown),
      ),
    ),
    card("What each scenario would show", shows),
  );
  for (const scenario of scenarios) {
    const row = el("div", { class: "model-row" }, el("h3", {}, scenario.name), el("p", { class: "muted" }, "…"));
    shows.append(row);
    try {
      const answer = await recommendFor(scenario, { user: id, count: 8 }, {});
      fill(row,
        el("h3", {}, scenario.name),
        el(
          "div",
          { class: "cards" },
          answer.recomms.map((r) => recommendationCard(scenario.endpoint, r, shown, image)),
        ),
      );
    } catch (error) {
      fill(row, el("h3", {}, scenario.name), problem(error));
    }
  }
}

async function modelsPage(view) {
  const data = await consoleApi(`/${seg(state.database)}/models`);
  fill(view, el("div", { class: "page-head" }, el("h1", {}, "Models")));
  for (const model of data.models) {
    const rows = model.versions.map((v) => [
      el("code", {}, v.version),
      v.savedAt,
      v.live ? el("span", { class: "badge ok" }, "live") : "",
      v.version === model.serving ? el("span", { class: "badge" }, "serving here") : "",
      v.training ? `${number(v.training.seconds, 2)} s` : "–",
      v.training && v.training.users !== undefined ? `${number(v.training.users)} × ${number(v.training.items)}, ${number(v.training.interactions)} interactions` : "–",
      v.live
        ? ""
        : el(
            "button",
            {
              type: "button",
              class: "secondary",
              "data-rollback": v.version,
              onclick: async () => {
                if (!(await confirmed(`Serve version ${v.version} of ${model.model} on every server?`))) return;
                try {
                  await databaseApi(`/-/models/${seg(model.model)}/rollback`, { to: v.version }, { method: "POST" });
                  route();
                } catch (error) {
                  view.prepend(problem(error));
                }
              },
            },
            "Roll back to this",
          ),
    ]);
    add(view,
      card(
        model.model,
        el("p", { class: "muted" }, `${model.algorithm}${Object.keys(model.params).length ? ` · ${JSON.stringify(model.params)}` : ""} · serving `, el("code", { class: "serving", "data-model": model.model }, model.serving || "fallback")),
        rows.length ? table(["version", "saved", "", "", "training", "data", ""], rows, { "data-model": model.model }) : el("p", { class: "muted" }, "no version trained yet"),
      ),
    );
  }
  const evaluations = data.evaluations.map((record) => {
    const metrics = Object.values(record.summary || {})[0] || {};
    const names = Object.keys(metrics).filter((n) => /^(ndcg|recall|hit)@/.test(n)).slice(0, 4);
    return card(
      `Evaluation ${record.created || record.file} · ${record.protocol || ""}`,
      table(
        ["model", ...names],
        Object.entries(record.summary || {}).map(([model, values]) => [model, ...names.map((n) => number(values[n]?.mean, 4))]),
      ),
    );
  });
  add(view, ...(evaluations.length ? evaluations : [card("Evaluations", el("p", { class: "muted" }, "No `reqo evaluate` record of this database yet."))]));
  if (data.maps.length) {
    add(view,
      card(
        "Maps of item vectors (t-SNE)",
        el("div", { class: "maps" }, data.maps.map((m) => el("figure", {}, el("img", { src: `${API}/${seg(state.database)}/maps/${seg(m.file)}`, alt: `t-SNE map of ${m.model}` }), el("figcaption", {}, m.file)))),
      ),
    );
  }
}

// -- routing --------------------------------------------------------------------------------

async function route() {
  clearTimeout(state.timer);
  const view = document.getElementById("view");
  const hash = location.hash.replace(/^#\/?/, "") || "overview";
  const [path, search] = hash.split("?");
  const params = new URLSearchParams(search || "");
  const parts = path.split("/").map(decodeURIComponent);
  const page = parts[0];
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.page === page);
  try {
    if (!state.overview) await loadOverview();
    if (page === "scenarios") await scenariosPage(view, params);
    else if (page === "preview") await previewPage(view, params);
    else if (page === "data" && parts[1] === "item") await itemPage(view, parts.slice(2).join("/"));
    else if (page === "data" && parts[1] === "user") await userPage(view, parts.slice(2).join("/"));
    else if (page === "data") await dataPage(view, params);
    else if (page === "models") await modelsPage(view);
    else await overviewPage(view);
  } catch (error) {
    fill(view, problem(error));
  }
  document.body.dataset.loaded = page;
}

async function loadOverview() {
  state.overview = await consoleApi("/overview");
  const select = document.getElementById("database");
  const names = state.overview.databases.map((d) => d.name);
  const saved = sessionStorage.getItem("reqo.database");
  state.database = names.includes(saved) ? saved : names[0];
  fill(select, ...names.map((n) => el("option", { value: n, selected: n === state.database }, n)));
}

document.getElementById("database").addEventListener("change", (event) => {
  state.database = event.target.value;
  sessionStorage.setItem("reqo.database", state.database);
  route();
});
window.addEventListener("hashchange", route);
route();
