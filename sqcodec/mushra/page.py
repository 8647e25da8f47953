"""The built-in MUSHRA page (``TEST_DIR/index.html``): plain HTML + JavaScript, no external resources.

It reads the blind view of the test from ``GET /api/test`` (trial ids, blind condition ids and labels,
stimulus URLs; never the condition names), shows an intro with the participant fields and a volume
check, then one page per trial: a play button for the reference and for each blind-labelled condition
(switching keeps the playback position), a 0-100 slider per condition, an optional comment and
*Next*. Every condition must be played before moving on. After the last trial it POSTs the session as
JSON to ``/api/submit``::

    {"test_id": ..., "session_uuid": ..., "participant": {"alias": ..., ...},
     "trials": [{"id": "trial01", "time_ms": 5321, "comment": "", "ratings": {"c1": 100, "c2": 43}}]}

``document.body.dataset.state`` is ``loading``, ``intro``, ``trial``, ``sending``, ``submitted`` or
``error`` (used by the browser test).
"""

from __future__ import annotations

__all__ = ["INDEX_HTML"]

INDEX_HTML = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MUSHRA listening test</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 1.5rem auto; padding: 0 1rem;
         color: #222; background: #fafafa; }
  h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; }
  button { font-size: 1rem; padding: 0.35rem 0.9rem; margin: 0.2rem; cursor: pointer; }
  button.playing { background: #2a7; color: #fff; }
  button.played { border-color: #2a7; }
  .row { display: grid; grid-template-columns: 7rem 1fr 3rem; align-items: center; gap: 0.6rem;
         padding: 0.25rem 0; border-bottom: 1px solid #ddd; }
  .scale { display: grid; grid-template-columns: 7rem repeat(5, 1fr) 3rem; gap: 0; font-size: 0.8rem;
           color: #555; text-align: center; }
  input[type=range] { width: 100%; }
  .value { font-variant-numeric: tabular-nums; text-align: right; }
  .field { margin: 0.5rem 0; } .field label { display: inline-block; min-width: 16rem; }
  #status { color: #a22; min-height: 1.2rem; }
  textarea { width: 100%; }
</style>
</head>
<body data-state="loading">
<h1 id="title">MUSHRA listening test</h1>
<section id="intro" hidden>
  <div id="instructions"></div>
  <div id="fields"></div>
  <p>Volume check: <button id="volume-play" type="button">Play a sample</button>
     <button id="volume-stop" type="button">Stop</button></p>
  <button id="start" type="button">Start the test</button>
</section>
<section id="trial" hidden>
  <h2 id="trial-title"></h2>
  <div id="trial-instructions"></div>
  <p><button id="play-ref" type="button" data-key="ref">Reference</button>
     <button id="stop" type="button">Stop</button>
     <label><input id="loop" type="checkbox"> loop</label></p>
  <div class="scale"><span></span><span>bad</span><span>poor</span><span>fair</span><span>good</span>
    <span>excellent</span><span></span></div>
  <div id="conditions"></div>
  <p><label for="comment">Comment (optional)</label><br><textarea id="comment" rows="2"></textarea></p>
  <button id="next" type="button">Next</button>
</section>
<section id="done" hidden>
  <p id="done-msg"></p>
  <button id="retry" type="button" hidden>Send again</button>
</section>
<p id="status" role="status"></p>
<div id="audios" hidden></div>
<script>
"use strict";
const S = { test: null, index: -1, shownAt: 0, results: [], participant: {}, uuid: null,
            audios: {}, current: null, played: new Set() };
const $ = (id) => document.getElementById(id);
function setState(s) { document.body.dataset.state = s; }
function status(msg) { $("status").textContent = msg || ""; }
function show(section) {
  for (const id of ["intro", "trial", "done"]) $(id).hidden = id !== section;
}
function newUuid() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
function stopAll(rewind) {
  for (const a of Object.values(S.audios)) { a.pause(); if (rewind) a.currentTime = 0; }
  S.current = null;
  updateButtons();
}
function updateButtons() {
  for (const b of document.querySelectorAll("button[data-key]")) {
    const a = S.audios[b.dataset.key];
    b.classList.toggle("playing", !!a && !a.paused);
    b.classList.toggle("played", S.played.has(b.dataset.key));
  }
}
function play(key) {
  const a = S.audios[key];
  if (!a) return;
  let t = 0;
  if (S.current === key) {
    if (!a.paused) { a.pause(); updateButtons(); return; }
    t = a.ended ? 0 : a.currentTime;
  } else if (S.current) {
    const c = S.audios[S.current];
    if (!c.paused) t = c.currentTime;
    c.pause();
  }
  if (Number.isFinite(a.duration) && t >= a.duration) t = 0;
  a.currentTime = t;
  S.current = key;
  a.play().catch((e) => status(`cannot play: ${e.message}`));
  updateButtons();
}
function makeAudio(key, url) {
  const a = document.createElement("audio");
  a.id = `audio-${key}`; a.preload = "auto"; a.src = url; a.dataset.key = key;
  a.loop = $("loop").checked;
  a.addEventListener("play", () => { S.played.add(key); updateButtons(); });
  a.addEventListener("pause", updateButtons);
  a.addEventListener("ended", updateButtons);
  a.addEventListener("error", () => status(`cannot load ${url}`));
  $("audios").appendChild(a);
  S.audios[key] = a;
}
function buildIntro() {
  const t = S.test;
  document.title = t.name;
  $("title").textContent = t.name;
  $("instructions").innerHTML = t.instructions;
  const box = $("fields");
  for (const f of t.participant_fields) {
    const div = document.createElement("div");
    div.className = "field";
    const label = document.createElement("label");
    label.textContent = f.label + (f.optional ? " (optional)" : "");
    label.htmlFor = `field-${f.name}`;
    let input;
    if (f.type === "choice") {
      input = document.createElement("select");
      input.appendChild(new Option("choose...", ""));
      for (const o of f.options) input.appendChild(new Option(o, o));
    } else {
      input = document.createElement("input");
      input.type = "text"; input.maxLength = 200;
    }
    input.id = `field-${f.name}`; input.dataset.field = f.name;
    div.append(label, input);
    box.appendChild(div);
  }
  const vol = new Audio(t.trials[0].reference);
  vol.id = "audio-volume";
  $("volume-play").onclick = () => { vol.currentTime = 0; vol.play(); };
  $("volume-stop").onclick = () => vol.pause();
  $("start").onclick = () => {
    const p = {};
    for (const f of t.participant_fields) {
      const v = $(`field-${f.name}`).value.trim();
      if (!v && !f.optional) { status(`Please fill in: ${f.label}`); return; }
      p[f.name] = v;
    }
    vol.pause();
    S.participant = p;
    status("");
    showTrial(0);
  };
  show("intro");
  setState("intro");
}
function showTrial(i) {
  stopAll(false);
  for (const a of Object.values(S.audios)) { a.removeAttribute("src"); a.load(); a.remove(); }
  S.audios = {}; S.played = new Set(); S.index = i;
  const trial = S.test.trials[i];
  $("trial").dataset.trialId = trial.id;
  $("trial-title").textContent = `Trial ${i + 1} of ${S.test.trials.length}`;
  $("trial-instructions").innerHTML = i === 0 ? S.test.instructions : "";
  makeAudio("ref", trial.reference);
  const box = $("conditions");
  box.textContent = "";
  for (const c of trial.conditions) {
    makeAudio(c.id, c.url);
    const row = document.createElement("div");
    row.className = "row";
    const b = document.createElement("button");
    b.type = "button"; b.id = `play-${c.id}`; b.className = "play"; b.dataset.key = c.id;
    b.textContent = `Play ${c.label}`;
    b.onclick = () => play(c.id);
    const r = document.createElement("input");
    r.type = "range"; r.min = "0"; r.max = "100"; r.step = "1"; r.value = "0";
    r.id = `rating-${c.id}`; r.className = "rating"; r.dataset.cond = c.id;
    r.setAttribute("aria-label", `rating of ${c.label}`);
    const v = document.createElement("span");
    v.className = "value"; v.id = `value-${c.id}`; v.textContent = "0";
    r.addEventListener("input", () => { v.textContent = r.value; });
    r.addEventListener("change", () => { v.textContent = r.value; });
    row.append(b, r, v);
    box.appendChild(row);
  }
  $("comment").value = "";
  $("next").textContent = i + 1 === S.test.trials.length ? "Submit" : "Next";
  S.shownAt = performance.now();
  show("trial");
  setState("trial");
  window.scrollTo(0, 0);
}
function finishTrial() {
  const trial = S.test.trials[S.index];
  if (S.test.require_playback) {
    const missing = trial.conditions.filter((c) => !S.played.has(c.id)).map((c) => c.label);
    if (missing.length) {
      status(`Please listen to every condition first (not yet played: ${missing.join(", ")})`);
      return;
    }
  }
  const ratings = {};
  for (const c of trial.conditions) ratings[c.id] = Number($(`rating-${c.id}`).value);
  S.results[S.index] = { id: trial.id, time_ms: Math.round(performance.now() - S.shownAt),
                         comment: $("comment").value.trim(), ratings };
  status("");
  if (S.index + 1 < S.test.trials.length) showTrial(S.index + 1); else submit();
}
async function submit() {
  stopAll(false);
  setState("sending");
  show("done");
  $("retry").hidden = true;
  $("done-msg").textContent = "Sending your ratings...";
  const body = { test_id: S.test.test_id, session_uuid: S.uuid, participant: S.participant,
                 trials: S.results };
  try {
    const r = await fetch("api/submit", { method: "POST", headers: { "Content-Type": "application/json" },
                                          body: JSON.stringify(body) });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(answer.error || `HTTP ${r.status}`);
    $("done-msg").textContent = "Thank you! Your ratings were saved. You can close this page.";
    setState("submitted");
  } catch (e) {
    $("done-msg").textContent = `Your ratings could not be saved: ${e.message}`;
    $("retry").hidden = false;
    setState("error");
  }
}
async function init() {
  $("play-ref").onclick = () => play("ref");
  $("stop").onclick = () => stopAll(true);
  $("loop").onchange = () => { for (const a of Object.values(S.audios)) a.loop = $("loop").checked; };
  $("next").onclick = finishTrial;
  $("retry").onclick = submit;
  try {
    const r = await fetch("api/test", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    S.test = await r.json();
  } catch (e) {
    status(`Cannot load the test: ${e.message}`);
    setState("error");
    return;
  }
  S.uuid = newUuid();
  buildIntro();
}
init();
</script>
</body>
</html>
"""
