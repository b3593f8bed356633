/* The troth dashboard's page script: the token, and the live change feed.
 *
 * The token the user types is kept in this tab's sessionStorage and sent as "Authorization: Bearer" on
 * every htmx request and on the change feed; it never goes into a URL or a cookie.
 * The change feed (GET /ui/feed, Server-Sent Events) is read with fetch, because EventSource cannot send
 * an Authorization header. Each "change" event makes the element carrying data-feed fetch its fragment
 * again (hx-trigger "troth:changed"). The page never polls, and it asks again no sooner than twice the
 * time its last fetch took (a big tree that takes 200 ms to render is fetched at most every 400 ms). */
(function () {
  "use strict";
  var KEY = "troth-token";

  function token() {
    try {
      return window.sessionStorage.getItem(KEY) || "";
    } catch (e) {
      return "";
    }
  }

  document.addEventListener("htmx:configRequest", function (ev) {
    var t = token();
    if (t) {
      ev.detail.headers["Authorization"] = "Bearer " + t;
    }
  });

  function follow(el) {
    var topic = el.getAttribute("data-feed");
    var delay = 1000;
    var started = 0;
    var allowed = 0;
    var timer = null;
    el.addEventListener("htmx:beforeRequest", function () {
      started = Date.now();
    });
    el.addEventListener("htmx:afterRequest", function () {
      allowed = Date.now() + Math.max(250, 2 * (Date.now() - started));
    });
    function changed() {
      if (timer !== null) {
        return; // a fetch is already due: it will show this change too
      }
      timer = window.setTimeout(function () {
        timer = null;
        htmx.trigger(el, "troth:changed");
      }, Math.max(0, allowed - Date.now()));
    }
    function retry() {
      el.setAttribute("data-feed-state", "retrying");
      window.setTimeout(connect, delay);
      delay = Math.min(delay * 2, 30000);
    }
    function connect() {
      var headers = { "HX-Request": "true" };
      var t = token();
      if (t) {
        headers["Authorization"] = "Bearer " + t;
      }
      window.fetch("/ui/feed?topic=" + encodeURIComponent(topic), { headers: headers, cache: "no-store" })
        .then(function (res) {
          if (res.status === 401 || res.status === 403) {
            el.setAttribute("data-feed-state", "refused");
            return null;
          }
          if (!res.ok || !res.body) {
            throw new Error("feed answered " + res.status);
          }
          delay = 1000;
          el.setAttribute("data-feed-state", "open");
          changed(); // whatever changed before the feed opened
          var reader = res.body.getReader();
          var decoder = new TextDecoder();
          var buffer = "";
          function pump() {
            return reader.read().then(function (chunk) {
              if (chunk.done) {
                throw new Error("feed closed");
              }
              buffer += decoder.decode(chunk.value, { stream: true });
              var at = buffer.indexOf("\n\n");
              while (at >= 0) {
                var frame = buffer.slice(0, at);
                buffer = buffer.slice(at + 2);
                if (frame.indexOf("event: change") === 0) {
                  changed();
                }
                at = buffer.indexOf("\n\n");
              }
              return pump();
            });
          }
          return pump();
        })
        .catch(retry);
    }
    connect();
  }

  function start() {
    var form = document.getElementById("token-form");
    var input = document.getElementById("token");
    var state = document.getElementById("token-state");
    var forget = document.getElementById("token-forget");
    if (state) {
      state.textContent = token() ? "token set for this tab" : "";
    }
    if (form && input) {
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        window.sessionStorage.setItem(KEY, input.value.trim());
        window.location.reload();
      });
    }
    if (forget) {
      forget.addEventListener("click", function () {
        window.sessionStorage.removeItem(KEY);
        window.location.reload();
      });
    }
    document.querySelectorAll("[data-feed]").forEach(follow);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
