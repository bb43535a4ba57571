// Live updates while a search runs: the server pushes `progress` events (SSE);
// when the counts change, the page is re-fetched and each region marked
// `data-live` is swapped for its fresh copy (by id). Forms are not regions, so
// what a reader is typing or picking stays put. Without JavaScript the page is
// complete; it just does not refresh itself (and never reloads on a timer).
(function () {
  const script = document.currentScript;
  const id = script && script.dataset.search;
  if (!id || !window.EventSource) return;
  let last = null;
  const source = new EventSource(`/searches/${id}/live`);
  source.addEventListener("progress", async (event) => {
    const now = event.data;
    if (last !== null && now !== last) {
      const response = await fetch(window.location.href);
      if (response.ok) {
        const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
        for (const region of document.querySelectorAll("[data-live]")) {
          const copy = fresh.getElementById(region.id);
          if (copy) region.replaceWith(copy);
        }
      }
    }
    last = now;
  });
  source.onerror = () => source.close();
})();
