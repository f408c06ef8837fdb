"""`GET /api/v1/docs`: a self-contained page (no CDN, the network may be closed) that renders the
merged OpenAPI document: operations by tag with their roles, parameters, bodies and answers, and
every schema."""

from __future__ import annotations

DOCS_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bejo API</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2733; background: #f6f7f9; }
header { background: #12355b; color: #fff; padding: 1rem 2rem; }
header a { color: #cfe3ff; }
main { max-width: 1100px; margin: 0 auto; padding: 1rem 2rem 4rem; }
h2 { border-bottom: 2px solid #d6dce4; padding-bottom: .2rem; margin-top: 2rem; }
details { background: #fff; border: 1px solid #d6dce4; border-radius: 6px; margin: .4rem 0; }
summary { cursor: pointer; padding: .5rem .8rem; }
.body { padding: .2rem 1rem .8rem; }
.m { display: inline-block; min-width: 4.2rem; font-weight: 700; font-family: monospace; }
.get { color: #1b7f3b; } .post { color: #a35f00; } .patch, .put { color: #6b3fa0; } .delete { color: #b3261e; }
code, pre { font-family: ui-monospace, monospace; font-size: 13px; }
pre { background: #f0f2f5; padding: .6rem; overflow: auto; border-radius: 4px; }
.tag { background: #e3ecf7; border-radius: 3px; padding: 0 .35rem; margin-left: .3rem; font-size: 12px; }
.pub { background: #e1f3e6; } .warn { color: #b3261e; }
table { border-collapse: collapse; } td, th { text-align: left; padding: .15rem .6rem .15rem 0; vertical-align: top; }
</style>
</head>
<body>
<header>
<h1 id="title">bejo API</h1>
<div id="desc"></div>
<p>Machine-readable: <a href="openapi.json">openapi.json</a> (OpenAPI 3.1) ·
<a href="asyncapi.json">asyncapi.json</a> (events, AsyncAPI 3.0)</p>
</header>
<main id="out">Loading openapi.json…</main>
<script>
"use strict";
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
  '"': "&quot;", "'": "&#39;"}[c]));
const refName = (s) => s && s.$ref ? s.$ref.split("/").pop() : null;
const schemaText = (s) => refName(s) ? `<a href="#schema-${esc(refName(s))}">${esc(refName(s))}</a>`
  : `<code>${esc(JSON.stringify(s))}</code>`;
function operation(path, method, op) {
  const roles = op["x-roles"] ? op["x-roles"].map((r) => `<span class="tag">${esc(r)}</span>`).join("")
    : (op.security ? '<span class="tag">any role</span>' : '<span class="tag pub">public</span>');
  const params = (op.parameters || []).map((p) => `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}` +
    `${p.required ? " (required)" : ""}</td><td>${schemaText(p.schema)}</td><td>${esc(p.description)}</td></tr>`)
    .join("");
  const body = op.requestBody ? Object.entries(op.requestBody.content || {}).map(([type, c]) =>
    `<p>Body <code>${esc(type)}</code>: ${schemaText(c.schema)}</p>`).join("") : "";
  const answers = Object.entries(op.responses || {}).map(([status, r]) => {
    const content = Object.entries(r.content || {}).map(([t, c]) => `${esc(t)} ${schemaText(c.schema)}`).join(", ");
    return `<tr><td><b>${esc(status)}</b></td><td>${esc(r.description)}</td><td>${content}</td></tr>`;
  }).join("");
  return `<details><summary><span class="m ${method}">${method.toUpperCase()}</span> <code>${esc(path)}</code>
    — ${esc(op.summary)} ${roles}</summary><div class="body">
    ${params ? `<table><tr><th>parameter</th><th>in</th><th>schema</th><th></th></tr>${params}</table>` : ""}
    ${body}<table><tr><th>status</th><th>meaning</th><th>content</th></tr>${answers}</table></div></details>`;
}
function render(doc) {
  document.getElementById("title").textContent = `${doc.info.title} ${doc.info.version}`;
  document.getElementById("desc").textContent = doc.info.description || "";
  const byTag = {};
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const [method, op] of Object.entries(item)) {
      if (typeof op !== "object" || !op.responses) continue;
      for (const tag of op.tags || ["other"]) (byTag[tag] ||= []).push(operation(path, method, op));
    }
  }
  let html = "";
  const down = Object.entries(doc["x-upstreams"] || {}).filter(([, u]) => u.status !== "included");
  if (down.length) html += `<p class="warn">Not reachable now, left out: ${down.map(([n, u]) =>
    `${esc(n)} (${esc(u.detail)})`).join(", ")}</p>`;
  for (const tag of Object.keys(byTag).sort()) html += `<h2>${esc(tag)}</h2>${byTag[tag].join("")}`;
  html += "<h2>Schemas</h2>";
  for (const [name, schema] of Object.entries(doc.components?.schemas || {})) {
    html += `<details id="schema-${esc(name)}"><summary><code>${esc(name)}</code> ${esc(schema.description)}` +
      `</summary><div class="body"><pre>${esc(JSON.stringify(schema, null, 2))}</pre></div></details>`;
  }
  document.getElementById("out").innerHTML = html;
}
fetch("openapi.json").then((r) => r.json()).then(render).catch((e) => {
  document.getElementById("out").textContent = `Could not load openapi.json: ${e}`;
});
</script>
</body>
</html>
"""
