"""The web dashboard of ``troth serve``, at ``/ui`` (docs/operations/dashboard.md).

Server-rendered HTML with htmx: the server renders every fragment from protocol answers
(``troth.server.ui.calls``), htmx swaps them into the page, and a change feed over Server-Sent Events
(``troth.server.ui.feed``) tells an open page when to fetch its fragment again. htmx (2.0.11, one 50 kB
file, vendored under ``static/`` with its 0BSD licence; to update it, replace ``htmx.min.js`` with the
``dist/htmx.min.js`` of the ``htmx.org`` npm package) and the page script are package data of the
wheel: nothing is fetched from a CDN, nothing is built at install time, and the dashboard works offline.

Modules: ``routes`` (the ASGI routes under ``/ui``, security headers), ``views`` (what each page and
fragment reads, and its template), ``calls`` (the protocol client), ``feed`` (the change feed),
``values`` (decoding params, values and errors for display).

Rejected: a compiled single-page application (React, Svelte…): a Node toolchain, a lockfile and a build
output to keep in step for a handful of tables, and the data would need a JSON API of its own besides the
protocol; rendering on the server keeps one place where auth and escaping happen. Polling for liveness
(see ``feed``).
"""
