// The events page: the events the signed-in organizer runs, each linking to its order page.
"use strict";
(function () {
  const { config, $, el, call, errorDetail, showMessage, signedIn, signOut, formatTime, start } = window.TQ;
  const state = { page: 1 };

  function eventRow(event) {
    return el("tr", {}, [
      el("td", {}, [el("a", { href: "/events/" + event.id + "/orders", textContent: event.name })]),
      el("td", { textContent: formatTime(event.starts_at, event.timezone) }),
      el("td", { textContent: event.location || "—" }),
      el("td", { textContent: event.roles.join(", ") || "admin" }),
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
    $("page-info").textContent = "Page " + state.page + " of " + pages + " · " + data.total + " events";
    $("prev").disabled = state.page <= 1;
    $("next").disabled = state.page >= pages;
  }

  $("prev").addEventListener("click", () => { state.page -= 1; load(); });
  $("next").addEventListener("click", () => { state.page += 1; load(); });
  start(load);
})();
