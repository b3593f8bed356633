"""A loopback stand-in for api.weather.gov (ours: there is no internet here).

* ``GET /points/{lat},{lon}`` answers ``properties.forecast`` pointing at this server; ``0,0`` is 404.
* ``GET /gridpoints/TST/{lat},{lon}/forecast`` answers 7 periods, after the configured delay.
* ``GET /_stats`` — hits per path; ``POST /_control`` with ``{"forecast_delay": seconds}`` slows the
  forecast endpoint down (a request is counted when it arrives, before the delay).

    python -m examples.mcp_tools.fake_nws [--port 0]

prints ``fake NWS listening on http://127.0.0.1:<port>`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections import Counter

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples._common import line_buffered

PERIOD_NAMES = [
    "Tonight",
    "Monday",
    "Monday Night",
    "Tuesday",
    "Tuesday Night",
    "Wednesday",
    "Wednesday Night",
]


class State:
    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.forecast_delay = 0.0


def build_app(state: State | None = None) -> Starlette:
    state = state or State()

    async def points(request: Request) -> JSONResponse:
        state.hits[request.url.path] += 1
        lat, lon = request.path_params["lat"], request.path_params["lon"]
        try:
            flat, flon = float(lat), float(lon)
        except ValueError:
            return JSONResponse({"title": "Invalid Parameter"}, status_code=400)
        if flat == 0 and flon == 0:
            return JSONResponse({"title": "Data Unavailable For Requested Point", "status": 404}, 404)
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {"properties": {"forecast": f"{base}/gridpoints/TST/{lat},{lon}/forecast", "gridId": "TST"}}
        )

    async def forecast(request: Request) -> JSONResponse:
        state.hits[request.url.path] += 1
        if state.forecast_delay > 0:
            await asyncio.sleep(state.forecast_delay)
        lat, lon = request.path_params["lat"], request.path_params["lon"]
        periods = [
            {
                "number": n + 1,
                "name": name,
                "temperature": 50 + n,
                "temperatureUnit": "F",
                "windSpeed": f"{5 + n} mph",
                "windDirection": "NW",
                "detailedForecast": f"Forecast {n + 1} for {lat},{lon}: partly cloudy.",
            }
            for n, name in enumerate(PERIOD_NAMES)
        ]
        return JSONResponse({"properties": {"periods": periods}})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({"hits": dict(state.hits), "forecast_delay": state.forecast_delay})

    async def control(request: Request) -> JSONResponse:
        body = await request.json()
        if "forecast_delay" in body:
            state.forecast_delay = float(body["forecast_delay"])
        return JSONResponse({"forecast_delay": state.forecast_delay})

    return Starlette(
        routes=[
            Route("/points/{lat},{lon}", points),
            Route("/gridpoints/{office}/{lat},{lon}/forecast", forecast),
            Route("/_stats", stats),
            Route("/_control", control, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    args = parser.parse_args()
    line_buffered()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)  # connections queue from now on, so the banner below is never early
    port = sock.getsockname()[1]
    config = uvicorn.Config(build_app(), log_level="warning", access_log=False)
    print(f"fake NWS listening on http://127.0.0.1:{port}", flush=True)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
