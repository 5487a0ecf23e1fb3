"use strict";
// The search page: one query at a time against /search, "why this result" from /explain. No framework, no build.

const $ = (id) => document.getElementById(id);
const state = { image: null, imageUrl: null, product: null, seq: 0, requests: 0, hits: [] };

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function thumb(url, alt) {  // the image, or a grey "no image" box
  return url ? el("img", { src: url, alt: alt || "", loading: "lazy" }) : el("div", { className: "thumb" }, "no image");
}

function fmt(x, digits = 3) { return x == null ? "–" : Number(x).toFixed(digits); }

async function call(path, params, file) {
  let response;
  if (file) {
    const form = new FormData();
    for (const [key, value] of Object.entries(params)) form.append(key, value);
    form.append("image", file);
    response = await fetch(path, { method: "POST", body: form });
  } else {
    response = await fetch(`${path}?${new URLSearchParams(params)}`);
  }
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

// ------------------------------------------------------------------------------------------------ query
function filterString() {
  const clauses = [];
  if ($("category").value) clauses.push(`category=${$("category").value}`);
  if ($("price-max").value !== "") clauses.push(`price<=${$("price-max").value}`);
  if ($("in-stock").checked) clauses.push("in_stock");
  return clauses.join(";");
}

function mmrLambda() { return parseFloat($("mmr").value); }

function queryParams() {
  const params = {};
  const text = $("query").value.trim();
  if (state.product) params.product = state.product.id;
  else if (text) params.text = text;
  return params;
}

function hasQuery() { return Boolean(state.product || state.image || $("query").value.trim()); }

async function search() {
  renderChips();
  if (!hasQuery()) {
    setStatus("Type a query or upload an image.");
    return;
  }
  const params = { ...queryParams(), k: $("k").value, explain: "true" };
  const filter = filterString();
  if (filter) params.filter = filter;
  if (mmrLambda() < 1) params.mmr_lambda = mmrLambda();
  const seq = ++state.seq;
  state.requests += 1;
  document.body.dataset.requests = String(state.requests);
  setStatus("Searching…");
  try {
    const data = await call("/search", params, state.product ? null : state.image);
    if (seq !== state.seq) return;  // a newer query is on its way
    showError(null);
    state.hits = data.results;
    renderResults(data);
  } catch (err) {
    if (seq !== state.seq) return;
    state.hits = [];
    $("results").replaceChildren();
    setStatus("");
    showError(err.message);
  }
}

function setStatus(text) { $("status").textContent = text; }

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

// ------------------------------------------------------------------------------------------------ results
function renderResults(data) {
  const mmr = mmrLambda() < 1 ? `MMR λ ${mmrLambda().toFixed(2)}` : "MMR off";
  const what = state.product ? `bought with ${state.product.id}` : [data.query.text && `“${data.query.text}”`,
    data.query.image && `image ${data.query.image}`].filter(Boolean).join(" + ");
  setStatus(data.results.length
    ? `${data.results.length} results for ${what} · ${mmr} · ${Math.round(data.took_ms)} ms`
    : `No results for ${what}${data.query.filter ? " with these filters" : ""}.`);
  $("results").replaceChildren(...data.results.map((hit, i) => card(hit, i)));
}

function card(hit, rank) {
  const node = el("article", { className: "card", tabIndex: 0, title: "why this result?" },
    el("div", { className: "thumb" }, hit.image ? el("img", { src: hit.image, alt: hit.title || "" }) : "no image"),
    el("div", { className: "info" },
      el("div", { className: "title" }, hit.title || "(no title)"),
      el("div", { className: "cat" }, hit.category),
      el("div", { className: "meta" },
        el("span", { className: "price" }, hit.price == null ? "" : `$${hit.price.toFixed(2)}`),
        el("span", { className: "score", title: "final score" }, `#${rank + 1} · ${fmt(hit.score)}`))));
  node.dataset.id = hit.id;
  const open = () => explainHit(hit, node);
  node.addEventListener("click", open);
  node.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
  return node;
}

// ------------------------------------------------------------------------------------------------ why this result
async function explainHit(hit, node) {
  document.querySelectorAll(".card.selected").forEach((c) => c.classList.remove("selected"));
  node.classList.add("selected");
  $("why").hidden = false;
  $("why-body").replaceChildren(el("p", { className: "muted" }, `Explaining ${hit.id}…`));
  try {
    const data = await call("/explain", { ...queryParams(), result: hit.id, k: 5 },
                            state.product ? null : state.image);
    renderWhy(hit, data);
  } catch (err) {
    $("why-body").replaceChildren(el("div", { className: "error" }, err.message));
  }
}

function bar(name, value, max, signed = false, text = null) {
  const width = max > 0 ? Math.min(100, (100 * Math.abs(value)) / max) : 0;
  const cls = signed ? (value >= 0 ? "fill pos" : "fill neg") : "fill";
  return el("div", { className: "row" }, el("span", { className: "name", title: name }, name),
    el("div", { className: "track" }, el("div", { className: cls, style: `width:${width}%` })),
    el("span", { className: "value" }, text ?? (signed && value > 0 ? "+" : "") + fmt(value)));
}

function renderWhy(hit, data) {
  const stages = Object.entries(hit.stages || {});
  const stageMax = Math.max(0, ...stages.map(([, v]) => Math.abs(v)));
  const neighbourMax = Math.max(0, ...data.neighbours.map((n) => Math.abs(n.contribution)));
  const body = [
    el("div", { className: "product" }, thumb(data.result.image, data.result.title),
      el("div", {}, el("strong", {}, data.result.title || "(no title)"), el("div", { className: "muted" },
        `${hit.id} · ${hit.category}${hit.price == null ? "" : ` · $${hit.price.toFixed(2)}`}`))),
    el("h3", {}, "Ranking stages"),
    ...stages.map(([name, value]) => bar(name, value, stageMax)),
    el("h3", {}, "Which modality mattered"),
    ...data.modalities.map((m) => bar(m.name, m.share, 1, false, `${Math.round(100 * m.share)}%`)),
    el("div", { className: "note" }, data.modalities.some((m) => m.fusion_weight != null)
      ? "Fusion weights: " + data.modalities.map((m) => `${m.name} ${Math.round(100 * m.fusion_weight)}%`).join(", ")
      : "Share of the score change when the modality is masked out."),
    el("h3", {}, "Graph neighbours"),
    el("div", { className: "muted" }, `Graph-space score ${fmt(data.score)}: content alone ${fmt(data.content_score)}, `
      + `links ${data.graph_contribution >= 0 ? "+" : ""}${fmt(data.graph_contribution)}`),
    ...(data.neighbours.length ? data.neighbours.map((n) => el("div", { className: "neighbour" },
      thumb(n.image, n.title), el("span", { className: "name", title: n.title || "" }, n.title || n.id),
      el("span", { className: `value ${n.contribution >= 0 ? "pos" : "neg"}` },
        `${n.contribution >= 0 ? "+" : ""}${fmt(n.contribution)}`)))
      : [el("div", { className: "note" }, "No linked products (or a model without graph layers).")]),
    neighbourMax > 0 ? el("div", { className: "note" }, "Contribution: score minus the score without that link.")
      : null,
    el("button", { className: "secondary", type: "button", id: "bought-with",
                   onclick: () => { state.product = { id: hit.id, title: hit.title, image: hit.image }; search(); } },
      "Products bought with this"),
  ];
  $("why-body").replaceChildren(...body.filter(Boolean));
}

// ------------------------------------------------------------------------------------------------ chips, setup
function renderChips() {
  const chips = [];
  if (state.product) {
    chips.push(chip(`bought with ${state.product.title || state.product.id}`, state.product.image,
                    () => { state.product = null; search(); }));
  } else if (state.image) {
    chips.push(chip(state.image.name, state.imageUrl, () => {
      state.image = null;
      $("image").value = "";
      search();
    }));
  }
  $("chips").replaceChildren(...chips);
}

function chip(label, image, remove) {
  return el("span", { className: "chip" }, image ? el("img", { src: image, alt: "" }) : null, label,
    el("button", { type: "button", title: "remove", onclick: remove }, "×"));
}

async function setup() {
  try {
    const health = await call("/health", {});
    const m = health.model;
    $("run-info").textContent = `${health.products} products · ${m.fusion} fusion, ${m.gnn_layers} ${m.conv} layers`
      + (m.relevance_head ? " · relevance head" : "") + (health.run ? ` · ${health.run.split("/").pop()}` : "");
    const tree = await call("/categories", {});
    for (const top of tree.categories) {
      const group = el("optgroup", { label: top.name }, el("option", { value: top.name }, `All ${top.name} (${top.count})`));
      for (const child of top.children) group.append(el("option", { value: child.name }, `${child.name} (${child.count})`));
      $("category").append(group);
    }
  } catch (err) {
    showError(err.message);
  }
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); state.product = null; search(); });
  $("image").addEventListener("change", () => {
    state.image = $("image").files[0] || null;
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.imageUrl = state.image ? URL.createObjectURL(state.image) : null;
    state.product = null;
    search();
  });
  $("mmr").addEventListener("input", () => {
    $("mmr-value").textContent = mmrLambda() < 1 ? `λ ${mmrLambda().toFixed(2)}` : "MMR off";
  });
  for (const id of ["mmr", "category", "price-max", "in-stock", "k"]) {
    $(id).addEventListener("change", () => { if (hasQuery()) search(); });
  }
  $("why-close").addEventListener("click", () => { $("why").hidden = true; });
}

setup();
