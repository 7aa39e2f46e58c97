// The events page: the events the signed-in organizer runs, each linking to its order page.
"use strict";
(function () {
  const { config, $, el, t, call, errorDetail, showMessage, signedIn, signOut, formatTime, formatNumber,
          start } = window.TQ;
  const state = { page: 1 };

  // The roles the API writes, as the organizer reads them (literal t() calls: `make messages` finds them).
  function roleName(role) {
    const names = { owner: t("owner"), organizer: t("organizer"), coorganizer: t("coorganizer") };
    return Object.prototype.hasOwnProperty.call(names, role) ? names[role] : role;
  }

  function roleList(roles) {
    if (!roles.length) return t("admin");
    const names = roles.map(roleName);
    try { return new Intl.ListFormat(window.TQ.lang(), { type: "unit", style: "short" }).format(names); }
    catch (e) { return names.join(", "); }
  }

  function eventRow(event) {
    return el("tr", {}, [
      el("td", {}, [el("a", { href: "/events/" + event.id + "/orders" }, [el("bdi", { textContent: event.name })])]),
      el("td", { textContent: formatTime(event.starts_at, event.timezone) }),
      el("td", {}, [el("bdi", { textContent: event.location || "—" })]),
      el("td", { textContent: roleList(event.roles) }),
    ]);
  }

  async function load() {
    const query = new URLSearchParams({ page: state.page, per_page: config.perPage });
    const response = await call(config.eventsUrl + "?" + query);
    if (response.status === 401) return signOut(await errorDetail(response));
    if (!response.ok) return showMessage(await errorDetail(response), "error");
    const data = await response.json();
    signedIn(true);
    $("events").tBodies[0].replaceChildren(...data.events.map(eventRow));
    $("empty").hidden = data.events.length > 0;
    const pages = Math.max(1, Math.ceil(data.total / config.perPage));
    $("page-info").textContent = t("Page %(page)s of %(pages)s · %(count)s events",
      { page: formatNumber(state.page), pages: formatNumber(pages), count: formatNumber(data.total) });
    $("prev").disabled = state.page <= 1;
    $("next").disabled = state.page >= pages;
  }

  $("prev").addEventListener("click", () => { state.page -= 1; load(); });
  $("next").addEventListener("click", () => { state.page += 1; load(); });
  start(load);
})();
