// What the organizer pages share: their language, signing in (session cookie from a one-time link, or
// a pasted API token kept in this tab), calling the JSON API, the message box. Text is only ever set
// as text.
"use strict";
window.TQ = (function () {
  const $ = (id) => document.getElementById(id);
  const configNode = $("page-config");  // the sign-in link's page has none: it only needs the language
  const config = configNode ? JSON.parse(configNode.textContent) : {};
  const TOKEN_KEY = "ticketq.token";
  const PLACEHOLDER = /%\((\w+)\)s/g;

  // The page's language: the first of the browser's languages ticketq has a catalog for (the server
  // lists them on <html data-languages>), else English, the catalogs' source text.
  const supported = (document.documentElement.dataset.languages || "en").split(" ");
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  const chosen = wanted.find((tag) => tag && supported.includes(String(tag).split("-")[0].toLowerCase()));
  let lang = chosen ? chosen.split("-")[0].toLowerCase() : "en";
  let messages = {};
  let rightToLeft = false;
  // In a right-to-left page each value put into a sentence (a name, an email, an error) is a bidi
  // isolate (U+2068 … U+2069, invisible), so "PyCon <Test>" or "550 no such user" keeps its order.
  const isolate = (value) => (rightToLeft ? "\u2068" + String(value) + "\u2069" : String(value));

  // Dates and numbers as the browser's own tag for that language writes them ("de-AT", "fr-CA");
  // English keeps the day-month-year, 24-hour times the page always showed.
  function formatLocale() {
    if (lang === "en") return "en-GB";
    try { return Intl.getCanonicalLocales(chosen)[0]; } catch (e) { return lang; }
  }

  // The translation of an English message (itself when the catalog has none), its %(name)s filled in.
  function t(msgid, args) {
    const text = Object.prototype.hasOwnProperty.call(messages, msgid) ? String(messages[msgid]) : msgid;
    if (!args) return text;
    return text.replace(PLACEHOLDER, (whole, name) => (name in args ? isolate(args[name]) : whole));
  }

  // Every element the server marked: its text, and children marked data-slot (a <code>) kept where
  // the translation puts their placeholder.
  function translatePage() {
    for (const node of document.querySelectorAll("[data-i18n]")) {
      const args = node.dataset.i18nArgs ? JSON.parse(node.dataset.i18nArgs) : {};
      const slots = {};
      for (const child of node.querySelectorAll("[data-slot]")) slots[child.dataset.slot] = child;
      const parts = t(node.dataset.i18n).split(/%\((\w+)\)s/);
      node.replaceChildren(...parts.map((part, i) =>
        (i % 2 === 0 ? part : slots[part] || (part in args ? isolate(args[part]) : ""))));
    }
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.placeholder = t(node.dataset.i18nPlaceholder);
    }
  }

  // English is what the server rendered; any other language's messages come from the same catalogs
  // as the emails. Without them (an old server, a network error) the page stays in English.
  const ready = (async () => {
    if (lang !== "en") {
      try {
        const response = await fetch("/v1/locales/" + encodeURIComponent(lang) + "/messages",
          { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (!response.ok) throw new Error("HTTP " + response.status);
        const body = await response.json();
        messages = body.messages || {};
        rightToLeft = body.direction === "rtl";
        document.documentElement.dir = rightToLeft ? "rtl" : "ltr";
        translatePage();
      } catch (e) {
        lang = "en";
      }
    }
    document.documentElement.lang = lang;
    document.documentElement.dataset.ready = "true";  // tests wait on it
  })();

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
    return t("Request failed (HTTP %(status)s)", { status: response.status });
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
    return new Intl.DateTimeFormat(formatLocale(), { timeZone: timeZone, day: "numeric", month: "short",
      year: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" }).format(new Date(iso));
  }

  function formatNumber(n) { return new Intl.NumberFormat(formatLocale()).format(n); }

  // "€25.00", "25,00 €": the API's decimal string in the currency's own format.
  function formatAmount(amount, currency) {
    try {
      return new Intl.NumberFormat(formatLocale(), { style: "currency", currency: currency }).format(Number(amount));
    } catch (e) {
      return amount + " " + currency;
    }
  }

  // "5 minutes", "5 Minuten", "1 second": a count of a unit (second, minute, hour, day, month, year).
  function formatDuration(n, unit) {
    try {
      return new Intl.NumberFormat(formatLocale(), { style: "unit", unit: unit, unitDisplay: "long" }).format(n);
    } catch (e) {
      return n + " " + unit + (n === 1 ? "" : "s");
    }
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
    ready.then(() => { if (token() || config.session.cookie) load(); else signedIn(false); });
  }

  return { config, $, el, t, lang: () => lang, ready, showMessage, call, errorDetail, signedIn, signOut,
           formatTime, formatNumber, formatAmount, formatDuration, start, token };
})();
