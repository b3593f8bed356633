"""The worker: the durable ``get_forecast`` workflow, in group ``workers``.

    TROTH_URL=http://127.0.0.1:8001 NWS_BASE_URL=http://127.0.0.1:<port> python -m examples.mcp_tools.worker

The workflow fetches ``/points/<lat>,<lon>`` (child ``:1``), sleeps durably for 0.5 s (``:2``), fetches
the forecast URL it was given (``:3``) and formats the first 5 periods. Each fetch is a checkpoint: after a
crash, a new worker replays the finished ones from their recorded results and runs only what was left.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from examples._common import effect, serve_forever
from examples.mcp_tools.shared import WORKER_GROUP, coord, troth_url
from troth import Context, Exponential, Troth

USER_AGENT = "(troth mcp_tools example, troth@example.invalid)"
PERIODS = 5


class NwsError(Exception):
    """The weather service answered with an error (retried: it may be transient)."""


class NwsClientError(NwsError):
    """A 4xx answer: asking again will not help, so it is not retried."""


def nws_base() -> str:
    return os.environ.get("NWS_BASE_URL", "https://api.weather.gov").rstrip("/")


def fetch_nws(ctx: Context, url: str) -> Any:
    """GET ``url`` as GeoJSON; fails on a non-2xx status; returns the parsed JSON."""
    effect("fetch_nws", ctx.info.id, "start", url=url, attempt=ctx.info.attempt)
    try:
        reply = httpx.get(
            url, headers={"User-Agent": USER_AGENT, "Accept": "application/geo+json"}, timeout=10.0
        )
        if not reply.is_success:
            kind = NwsClientError if 400 <= reply.status_code < 500 else NwsError
            raise kind(f"NWS request {url} failed with status {reply.status_code}")
        data = reply.json()
    except Exception as exc:
        effect("fetch_nws", ctx.info.id, "error", url=url, error=str(exc))
        raise
    effect("fetch_nws", ctx.info.id, "end", url=url)
    return data


def format_periods(periods: list[dict[str, Any]]) -> str:
    blocks = [
        f"{p.get('name')}:\n"
        f"Temperature: {p.get('temperature')}°{p.get('temperatureUnit')}\n"
        f"Wind: {p.get('windSpeed')} {p.get('windDirection')}\n"
        f"Forecast: {p.get('detailedForecast')}"
        for p in periods[:PERIODS]
    ]
    return "\n\n---\n\n".join(blocks)


async def get_forecast(ctx: Context, latitude: float, longitude: float) -> str:
    points = await ctx.run(fetch_nws, f"{nws_base()}/points/{coord(latitude)},{coord(longitude)}")
    forecast_url = ((points or {}).get("properties") or {}).get("forecast")
    if not forecast_url:
        raise ValueError("NWS response missing properties.forecast")
    await ctx.sleep(0.5)
    forecast = await ctx.run(fetch_nws, forecast_url)
    periods = ((forecast or {}).get("properties") or {}).get("periods") or []
    return format_periods(periods)


def build() -> Troth:
    troth = Troth(troth_url(), group=WORKER_GROUP)
    troth.register(get_forecast)
    troth.register(
        fetch_nws,
        retry_policy=Exponential(delay=0.5, factor=2, max_retries=3, max_delay=4),
        non_retryable=(NwsClientError,),
    )
    return troth


def main() -> None:
    serve_forever(build(), f"worker ready (group {WORKER_GROUP!r}, pid {os.getpid()})")


if __name__ == "__main__":
    main()
