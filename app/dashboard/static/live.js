// Live updates while a search runs: the server pushes `progress` events (SSE);
// when the counts change, the page's sections are re-fetched and swapped in.
// Without JavaScript the page is complete; it just does not refresh itself.
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
        document.querySelector("main").replaceWith(fresh.querySelector("main"));
      }
    }
    last = now;
  });
  source.onerror = () => source.close();
})();
