#!/usr/bin/env python3
"""Current weather for a city, from api.openweathermap.org (Python stdlib only).

Usage: main.py [CITY]          (default: London)

Needs OPENWEATHER_API_KEY (free at https://openweathermap.org/api). When the key is
missing or the API cannot be reached, it says why and exits 0: a missing key or an
offline machine is not a bug in the skill.

Results are cached for ten minutes in /tmp/weather-cache, the one directory the
manifest lets it write.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

API = "https://api.openweathermap.org/data/2.5/weather"
CACHE_DIR = "/tmp/weather-cache"
CACHE_SECONDS = 600
TIMEOUT_SECONDS = 10


def cache_path(city):
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in city.lower())
    return os.path.join(CACHE_DIR, safe + ".json")


def read_cache(city):
    try:
        path = cache_path(city)
        if time.time() - os.stat(path).st_mtime < CACHE_SECONDS:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
    except (OSError, ValueError):
        pass
    return None


def write_cache(city, data):
    try:
        os.makedirs(CACHE_DIR, exist_ok=True)
        with open(cache_path(city), "w", encoding="utf-8") as f:
            json.dump(data, f)
    except OSError as e:
        print(f"note: not caching ({e.strerror}: {CACHE_DIR})", file=sys.stderr)


def fetch(city, key):
    query = urllib.parse.urlencode({"q": city, "appid": key, "units": "metric"})
    with urllib.request.urlopen(f"{API}?{query}", timeout=TIMEOUT_SECONDS) as resp:
        return json.load(resp)


def describe(data):
    name = data.get("name", "?")
    country = data.get("sys", {}).get("country", "")
    main = data.get("main", {})
    weather = (data.get("weather") or [{}])[0].get("description", "unknown conditions")
    wind = data.get("wind", {}).get("speed")
    place = f"{name}, {country}" if country else name
    parts = [f"{main.get('temp', '?')} °C", weather]
    extra = [f"humidity {main['humidity']}%"] if "humidity" in main else []
    if wind is not None:
        extra.append(f"wind {wind} m/s")
    return f"{place}: {', '.join(parts)}" + (f" ({', '.join(extra)})" if extra else "")


def main():
    city = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1].strip() else "London"
    key = os.environ.get("OPENWEATHER_API_KEY", "").strip()
    if not key:
        print(
            "No weather: OPENWEATHER_API_KEY is not set. Get a free key at "
            "https://openweathermap.org/api and export it; the manifest lets the "
            "sandbox pass exactly this variable through."
        )
        return 0

    cached = read_cache(city)
    if cached is not None:
        print(describe(cached) + " [cached]")
        return 0

    try:
        data = fetch(city, key)
    except urllib.error.HTTPError as e:
        if e.code == 401:
            print("No weather: the API rejected OPENWEATHER_API_KEY (HTTP 401). Check the key.")
        elif e.code == 404:
            print(f"No weather: OpenWeatherMap does not know the city {city!r}.")
        else:
            print(f"No weather: api.openweathermap.org answered HTTP {e.code} {e.reason}.")
        return 0
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        print(
            f"No weather: cannot reach api.openweathermap.org ({reason}). "
            "Offline, or network egress to api.openweathermap.org:443 is not allowed."
        )
        return 0
    except ValueError:
        print("No weather: api.openweathermap.org sent something that is not JSON.")
        return 0

    write_cache(city, data)
    print(describe(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
