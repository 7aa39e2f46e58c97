// What the organizer pages share: signing in (session cookie from a one-time link, or a pasted API
// token kept in this tab), calling the JSON API, the message box. Text is only ever set as text.
"use strict";
window.TQ = (function () {
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const TOKEN_KEY = "ticketq.token";
  const $ = (id) => document.getElementById(id);

  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children || []) node.append(child);  // strings become text nodes
    return node;
  }

  function showMessage(text, kind) {
    const box = $("message");
    box.textContent = text;
    box.className = kind;
    box.dataset.seq = String(Number(box.dataset.seq) + 1);
    box.hidden = false;
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  // A pasted token goes as a bearer header; otherwise the cookie goes by itself, and a write carries
  // the CSRF token the server put in the page.
  function call(url, options) {
    const opts = options || {};
    const method = opts.method || "GET";
    const headers = { Accept: opts.accept || "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    else if (method !== "GET" && config.session.cookie) headers[config.session.csrfHeader] = config.session.csrf;
    const init = { method: method, headers: headers, credentials: "same-origin" };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    return fetch(url, init);
  }

  async function errorDetail(response) {
    try {
      const body = await response.json();
      if (body.errors && body.errors[0] && body.errors[0].detail) return body.errors[0].detail;
    } catch (e) { /* not JSON */ }
    return "Request failed (HTTP " + response.status + ")";
  }

  function signedIn(yes) {
    $("sign-in").hidden = yes;
    $("main-view").hidden = !yes;
    $("session-bar").hidden = !yes;
  }

  async function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (config.session.cookie) {
      const headers = {};
      headers[config.session.csrfHeader] = config.session.csrf;
      try { await fetch("/logout", { method: "POST", headers: headers, credentials: "same-origin" }); }
      catch (e) { /* the cookie expires by itself */ }
      config.session.cookie = false;
    }
    signedIn(false);
    if (message) showMessage(message, "error");
  }

  // The time as people at the event read it, with the zone named: "6 Dec 2026, 14:05 CET".
  function formatTime(iso, timeZone) {
    if (!iso) return "";
    return new Intl.DateTimeFormat("en-GB", { timeZone: timeZone, day: "numeric", month: "short",
      year: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" }).format(new Date(iso));
  }

  function start(load) {
    $("sign-in-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      $("token").value = "";
      $("message").hidden = true;
      load();
    });
    $("sign-out").addEventListener("click", () => signOut());
    if (token() || config.session.cookie) load(); else signedIn(false);
  }

  return { config, $, el, showMessage, call, errorDetail, signedIn, signOut, formatTime, start, token };
})();
