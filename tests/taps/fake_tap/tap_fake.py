"""A Singer tap for the tests: ``tap-fake --config F (--discover | --test | --catalog C | --about)``.

It needs nothing but the standard library. The config's ``mode`` picks the behaviour:

``ok``                 the catalog of ``streams`` (default: contacts, deals); ``--test`` passes when
                       ``password`` equals ``expected_password``, else exits 1 with a 401 line
``hang``               sleeps for an hour (the runner must kill it)
``hang_child``         starts a child that sleeps for an hour holding stdout, then exits 0
``flood``              writes ``flood_mb`` MB (default 200) of output to stdout
``fail_with_password`` exits 1 with the config's password in a traceback on stderr
``stderr_message``     exits 1 with ``message`` as the last line of stderr
``malformed``          prints JSON cut short
``not_a_catalog``      prints a JSON document that is not a catalog
``rotate``             writes ``new_refresh_token`` into its config file, then acts as ``ok``
``rotate_and_fail``    writes ``new_refresh_token`` into its config file, then exits 1
``report``             the catalog, plus a stream ``report`` whose schema describes the process:
                       environment variable names, its config file's and directory's modes, cwd
``runs_file``          (any mode) a file to append "<pid> <arguments>" to on every run
``allocate``           allocates ``allocate_mb`` MB (default 4096) and prints the catalog
With ``--catalog``, prints a SCHEMA and a RECORD per selected stream and a STATE message.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import time

DEFAULT_STREAMS = {
    "contacts": {"type": "object", "properties": {"id": {"type": "string"}, "email": {"type": "string"},
                                                  "updatedAt": {"type": "string", "format": "date-time"}}},
    "deals": {"type": "object", "properties": {"id": {"type": "string"}, "amount": {"type": "number"}}},
}


def catalog(config: dict) -> dict:
    streams = config.get("streams") or DEFAULT_STREAMS
    entries = []
    for name, schema in streams.items():
        metadata = [{"breadcrumb": [], "metadata": {"inclusion": "available", "table-key-properties": ["id"],
                                                     "valid-replication-keys": ["updatedAt"]
                                                     if "updatedAt" in schema["properties"] else []}}]
        for field in schema["properties"]:
            metadata.append({"breadcrumb": ["properties", field],
                             "metadata": {"inclusion": "automatic" if field == "id" else "available"}})
        entries.append({"tap_stream_id": name, "stream": name, "schema": schema, "metadata": metadata,
                        "key_properties": ["id"]})
    return {"streams": entries}


def report(config_path: str) -> dict:
    directory = os.path.dirname(os.path.abspath(config_path))
    facts = {
        "environment": sorted(os.environ),
        "config_mode": oct(stat.S_IMODE(os.stat(config_path).st_mode)),
        "directory_mode": oct(stat.S_IMODE(os.stat(directory).st_mode)),
        "config_path": os.path.abspath(config_path),
        "cwd": os.getcwd(),
        "home": os.environ.get("HOME", ""),
    }
    return {"type": "object", "properties": {"id": {"type": "string"}}, "description": json.dumps(facts)}


def write_config(path: str, config: dict, **changes: str) -> None:
    config.update(changes)
    with open(path, "w") as handle:
        json.dump(config, handle)


def sync(config: dict, catalog_path: str) -> None:
    with open(catalog_path) as handle:
        chosen = json.load(handle)
    for stream in chosen["streams"]:
        top = next(m["metadata"] for m in stream["metadata"] if m["breadcrumb"] == [])
        if not top.get("selected"):
            continue
        fields = [m["breadcrumb"][1] for m in stream["metadata"] if m["breadcrumb"] and m["metadata"].get("selected")]
        print(json.dumps({"type": "SCHEMA", "stream": stream["tap_stream_id"], "schema": stream["schema"],
                          "key_properties": stream.get("key_properties", [])}))
        record = {field: f"{field}-1" for field in fields}
        print(json.dumps({"type": "RECORD", "stream": stream["tap_stream_id"], "record": record}))
    print(json.dumps({"type": "STATE", "value": {}}))


def misbehave(mode: str, config: dict, config_path: str) -> None:
    if mode == "hang":
        time.sleep(3600)
    elif mode == "hang_child":
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
        print(json.dumps(catalog(config)), flush=True)
        sys.exit(0)
    elif mode == "flood":
        chunk = b"x" * (1024 * 1024)
        for _ in range(int(config.get("flood_mb", 200))):
            sys.stdout.buffer.write(chunk)
        sys.exit(0)
    elif mode == "fail_with_password":
        sys.stderr.write("Traceback (most recent call last):\n  File \"tap.py\", line 1, in connect\n")
        sys.stderr.write(f"RuntimeError: login with password {config.get('password')} went wrong\n")
        sys.exit(1)
    elif mode == "stderr_message":
        sys.stderr.write("INFO starting\n" + str(config.get("message", "")) + "\n")
        sys.exit(1)
    elif mode == "malformed":
        print('{"streams": [{"tap_stream_id": "contacts", "sch')
        sys.exit(0)
    elif mode == "not_a_catalog":
        print(json.dumps({"hello": "world"}))
        sys.exit(0)
    elif mode in ("rotate", "rotate_and_fail"):
        write_config(config_path, config, refresh_token=config["new_refresh_token"])
        if mode == "rotate_and_fail":
            sys.stderr.write("HTTP 500 Internal Server Error from the API\n")
            sys.exit(1)
    elif mode == "allocate":
        hoard = bytearray(int(config.get("allocate_mb", 4096)) * 1024 * 1024)
        hoard[-1] = 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="tap-fake")
    parser.add_argument("--config", required=True)
    parser.add_argument("--discover", action="store_true")
    parser.add_argument("--test", action="store_true")
    parser.add_argument("--catalog")
    parser.add_argument("--state")
    parser.add_argument("--about", action="store_true")
    parser.add_argument("--format")
    args = parser.parse_args()
    if args.about:
        print(json.dumps({"name": "tap-fake", "capabilities": ["discover", "test", "about"]}))
        return
    with open(args.config) as handle:
        config = json.load(handle)
    mode = config.get("mode", "ok")
    if config.get("runs_file"):  # one line per run: "<pid> <arguments>"
        with open(config["runs_file"], "a") as handle:
            handle.write(f"{os.getpid()} {' '.join(sys.argv[3:])}\n")
    misbehave(mode, config, args.config)
    if args.test:
        if config.get("password") != config.get("expected_password"):
            sys.stderr.write("ERROR 401 Client Error: Unauthorized for url: https://api.example/me\n")
            sys.exit(1)
        return
    if args.catalog:
        sync(config, args.catalog)
        return
    found = catalog(config)
    if mode == "report":
        found["streams"].append({"tap_stream_id": "report", "stream": "report", "schema": report(args.config),
                                 "metadata": [{"breadcrumb": [], "metadata": {"inclusion": "available"}}]})
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
