// bertkit explorer: plain JavaScript over the server's /v1 API (see /docs). No libraries.
//
// Every rendered value carries a stable id or data attribute (data-token-id, data-weight,
// data-value, data-prob...) so tests and people can read the numbers back exactly; the
// visible text is rounded. Each section has data-status = idle | loading | done | error.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  let apiKey = "";
  // Latest request number per section: a slow, older answer must not overwrite a newer one.
  const latest = {};

  class ApiError extends Error {
    constructor(status, message, type, param) {
      super(message);
      this.status = status;
      this.type = type;
      this.param = param;
    }
  }

  // Relative URLs: the page is served at the server's root ("/"), possibly behind a prefix.
  async function api(path, body) {
    const headers = { "Accept": "application/json" };
    const init = { method: body === undefined ? "GET" : "POST", headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (apiKey) headers["Authorization"] = "Bearer " + apiKey;
    let res;
    try {
      res = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "could not reach the server (" + err.message + ")", "network_error", null);
    }
    let data = null;
    try {
      data = await res.json();
    } catch (err) {
      data = null;
    }
    if (!res.ok) {
      // The contract's error shape: {"error": {"message", "type", "param"}}.
      const e = (data && data.error) || {};
      throw new ApiError(res.status, e.message || res.statusText || "request failed",
                         e.type || "http_error", e.param === undefined ? null : e.param);
    }
    if (data === null) throw new ApiError(res.status, "the server sent no JSON", "bad_response", null);
    return data;
  }

  function showError(err) {
    const box = $("error-message");
    box.textContent = "";
    const strong = document.createElement("strong");
    strong.textContent = "Error" + (err.status ? " " + err.status : "") + ": ";
    box.appendChild(strong);
    box.appendChild(document.createTextNode(err.message));
    if (err.param) box.appendChild(document.createTextNode(" (parameter: " + err.param + ")"));
    box.dataset.status = String(err.status || "");
    box.dataset.type = err.type || "";
    box.dataset.param = err.param || "";
    box.hidden = false;
  }

  function clearError() {
    const box = $("error-message");
    box.hidden = true;
    box.textContent = "";
  }

  // Run one request for a section: marks it loading/done/error and drops stale answers.
  // Resolves to true when the answer was rendered.
  async function run(sectionEl, key, request, render) {
    const n = (latest[key] = (latest[key] || 0) + 1);
    sectionEl.dataset.status = "loading";
    sectionEl.setAttribute("aria-busy", "true");
    try {
      const data = await request();
      if (n !== latest[key]) return false;
      render(data);
      clearError();
      sectionEl.dataset.status = "done";
      return true;
    } catch (err) {
      if (n !== latest[key]) return false;
      sectionEl.dataset.status = "error";
      showError(err instanceof ApiError ? err : new ApiError(0, String(err), "client_error", null));
      return false;
    } finally {
      if (n === latest[key]) sectionEl.removeAttribute("aria-busy");
    }
  }

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  function lines(text) {
    return text.split(/\r?\n/).map((s) => s.trim()).filter((s) => s.length > 0);
  }

  function optionalText(id) {
    const v = $(id).value;
    return v.trim() ? v : null;
  }

  // ---- colours ---------------------------------------------------------------------
  // Attention weights are in [0, 1], shaded by their square root: absolute (a uniform row
  // looks pale, a peak looks dark) yet small weights of long inputs stay visible.
  // Similarities are in [-1, 1]: blue positive, red negative.
  function shade(cell, alpha, rgb) {
    const a = Math.max(0, Math.min(1, alpha));
    cell.style.backgroundColor = "rgba(" + rgb + "," + a.toFixed(3) + ")";
    if (a > 0.55) cell.classList.add("dark");
  }

  // A square (or rectangular) matrix as a table: header row and column of labels, each cell
  // carrying data-row, data-col and the exact value under `valueAttr`.
  function renderMatrix(table, rowLabels, colLabels, matrix, valueAttr, colour, caption) {
    table.querySelector("caption").textContent = caption;
    const thead = table.querySelector("thead");
    const tbody = table.querySelector("tbody");
    thead.textContent = "";
    tbody.textContent = "";
    const head = el("tr");
    head.appendChild(el("td", "", { class: "corner" }));
    colLabels.forEach((lab, j) => head.appendChild(el("th", lab, { scope: "col", "data-col": j, title: lab })));
    thead.appendChild(head);
    matrix.forEach((row, i) => {
      const tr = el("tr", null, { "data-row": i });
      tr.appendChild(el("th", rowLabels[i], { scope: "row", "data-row": i, title: rowLabels[i] }));
      row.forEach((v, j) => {
        const td = el("td", v.toFixed(2), { "data-row": i, "data-col": j });
        td.setAttribute(valueAttr, String(v));
        td.title = rowLabels[i] + " \u2192 " + colLabels[j] + ": " + v.toFixed(4);
        colour(td, v);
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    table.hidden = false;
  }

  // ---- model information -----------------------------------------------------------
  async function loadModels() {
    const info = $("model-info");
    info.dataset.status = "loading";
    try {
      const m = await api("v1/models");
      info.textContent = "Model: " + m.model + " \u00b7 back-end: " + m.backend + " \u00b7 dimension "
        + m.dimension + " \u00b7 up to " + m.max_length + " tokens per input";
      info.dataset.model = m.model;
      info.dataset.backend = m.backend;
      info.dataset.dimension = String(m.dimension);
      info.dataset.maxLength = String(m.max_length);
      renderClassifiers(m.classifiers || []);
      info.dataset.status = "done";
      clearError();
    } catch (err) {
      if (err.status === 503) {
        // The server loads the model in the background: wait for it rather than fail.
        info.textContent = "The model is still loading\u2026 (retrying every second)";
        setTimeout(loadModels, 1000);
        return;
      }
      info.textContent = "Model information unavailable.";
      info.dataset.status = "error";
      showError(err);
    }
  }

  function renderClassifiers(classifiers) {
    const select = $("classifier-select");
    select.textContent = "";
    classifiers.forEach((c) => {
      const opt = el("option", c.name + " (" + c.labels.join(", ") + ")", { value: c.name });
      select.appendChild(opt);
    });
    $("classify-section").hidden = classifiers.length === 0;
  }

  // ---- tokens ----------------------------------------------------------------------
  function renderTokens(data) {
    const tbody = $("tokens-table").querySelector("tbody");
    tbody.textContent = "";
    data.tokens.forEach((tok, i) => {
      const seg = data.token_type_ids[i];
      const tr = el("tr", null, {
        "data-index": i, "data-token": tok, "data-token-id": data.input_ids[i], "data-segment-id": seg,
      });
      if (seg) tr.classList.add("segment-b");
      tr.appendChild(el("td", String(i)));
      tr.appendChild(el("td", tok, { class: "token" }));
      tr.appendChild(el("td", String(data.input_ids[i]), { class: "num" }));
      tr.appendChild(el("td", String(seg), { class: "num" }));
      tbody.appendChild(tr);
    });
    $("tokens-table").hidden = false;
    $("tokens-table").dataset.count = String(data.tokens.length);
    const note = $("tokens-note");
    note.textContent = data.tokens.length + " tokens" + (data.truncated
      ? " \u2014 the input was longer than the model's limit and was truncated." : ".");
    note.dataset.truncated = String(Boolean(data.truncated));
  }

  async function tokenize() {
    const body = { text: $("text-input").value };
    const pair = optionalText("pair-input");
    if (pair !== null) body.pair = pair;
    // The heat-map follows only a good tokenization, so a bad input shows one error, not two.
    if (await run($("tokens-section"), "tokens", () => api("v1/tokenize", body), renderTokens)) attention();
  }

  // ---- attention -------------------------------------------------------------------
  function fillSelect(select, values, labelOf, keep) {
    select.textContent = "";
    values.forEach((v) => select.appendChild(el("option", labelOf(v), { value: String(v) })));
    if (values.map(String).includes(keep)) select.value = keep;
  }

  function renderAttention(data) {
    const layers = Array.from({ length: data.num_layers }, (_, i) => i + 1);
    const heads = ["average"].concat(Array.from({ length: data.num_heads }, (_, i) => i + 1));  // 1-based, as layers
    fillSelect($("layer-select"), layers, String, String(data.layer));
    fillSelect($("head-select"), heads, (h) => (h === "average" ? "average of all heads" : String(h)),
               data.head === null ? "average" : String(data.head));
    const table = $("attention-table");
    const headText = data.head === null ? "average of " + data.num_heads + " heads" : "head " + data.head;
    const labels = data.tokens.map((t, i) => t + " (" + i + ")");
    renderMatrix(table, labels, data.tokens, data.weights, "data-weight",
                 (td, w) => shade(td, Math.sqrt(w), "37,99,235"),
                 "Attention, layer " + data.layer + " of " + data.num_layers + ", " + headText);
    table.dataset.layer = String(data.layer);
    table.dataset.head = data.head === null ? "average" : String(data.head);
  }

  function attention() {
    const head = $("head-select").value;
    const body = {
      text: $("text-input").value,
      layer: parseInt($("layer-select").value, 10),
      head: head === "average" ? null : parseInt(head, 10),
    };
    const pair = optionalText("pair-input");
    if (pair !== null) body.pair = pair;
    run($("attention-block"), "attention", () => api("v1/attention", body), renderAttention);
  }

  // ---- similarity ------------------------------------------------------------------
  const simColour = (td, v) => shade(td, Math.abs(v), v >= 0 ? "37,99,235" : "220,38,38");

  function similarity() {
    const sentences = lines($("sentences-input").value);
    run($("similarity-section"), "similarity", () => api("v1/similarity", { sentences }), (data) => {
      const labels = data.labels;
      renderMatrix($("similarity-table"), labels, labels.map((_, j) => String(j + 1)), data.matrix,
                   "data-value", simColour, "Cosine similarity of sentence embeddings");
    });
  }

  function words() {
    const texts = lines($("word-texts-input").value);
    const word = $("word-input").value;
    run($("words-section"), "words", () => api("v1/similarity", { texts, word }), (data) => {
      const labels = data.labels;
      renderMatrix($("words-table"), labels, labels.map((_, j) => String(j + 1)), data.matrix,
                   "data-value", simColour, "Cosine similarity of \u201c" + word + "\u201d in its contexts");
    });
  }

  // ---- classifier ------------------------------------------------------------------
  function renderClassify(data) {
    const item = data.data[0];
    const table = $("classify-table");
    const tbody = table.querySelector("tbody");
    tbody.textContent = "";
    table.dataset.classifier = data.classifier;
    if (data.task === "regression") {  // one number, no probabilities
      table.querySelector("caption").textContent = data.classifier + ": " + item.value.toFixed(3);
      table.dataset.label = String(item.value);
      const tr = el("tr", null, { "data-label": data.labels[0], "data-value": String(item.value) });
      tr.appendChild(el("th", data.labels[0], { scope: "row" }));
      tr.appendChild(el("td", item.value.toFixed(3), { class: "num" }));
      tbody.appendChild(tr);
      table.hidden = false;
      return;
    }
    // single-label: the argmax; multi-label: every label over the threshold (maybe none)
    const chosen = data.task === "multi-label" ? item.labels : [item.label];
    const shown = chosen.length ? chosen.join(", ") : "(no label over " + data.threshold + ")";
    table.querySelector("caption").textContent = data.classifier + ": " + shown;
    table.dataset.label = chosen.join("|");
    data.labels.forEach((lab) => {
      const p = item.probabilities[lab];
      const tr = el("tr", null, { "data-label": lab, "data-prob": String(p) });
      if (chosen.includes(lab)) {
        tr.classList.add("predicted");
        tr.dataset.predicted = "true";
      }
      tr.appendChild(el("th", lab, { scope: "row" }));
      tr.appendChild(el("td", (100 * p).toFixed(1) + "%", { class: "num" }));
      const barCell = el("td");
      const bar = el("div", null, { class: "bar", role: "img", "aria-label": (100 * p).toFixed(1) + " percent" });
      bar.style.width = (100 * p).toFixed(1) + "%";
      barCell.appendChild(bar);
      tr.appendChild(barCell);
      tbody.appendChild(tr);
    });
    table.hidden = false;
  }

  function classify() {
    const body = { input: $("classify-input").value };
    const name = $("classifier-select").value;
    if (name) body.classifier = name;
    const pair = optionalText("classify-pair-input");
    if (pair !== null) body.pairs = [pair];
    run($("classify-section"), "classify", () => api("v1/classify", body), renderClassify);
  }

  // ---- wiring ----------------------------------------------------------------------
  function onSubmit(formId, handler) {
    $(formId).addEventListener("submit", (ev) => {
      ev.preventDefault();
      handler();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    onSubmit("tokens-form", tokenize);
    onSubmit("similarity-form", similarity);
    onSubmit("words-form", words);
    onSubmit("classify-form", classify);
    $("layer-select").addEventListener("change", attention);
    $("head-select").addEventListener("change", attention);
    $("api-key-apply").addEventListener("click", () => {
      apiKey = $("api-key").value.trim();
      loadModels();
    });
    loadModels();
  });
})();
