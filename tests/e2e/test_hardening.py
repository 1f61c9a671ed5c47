"""The real service processes (issue 9, "Security" and "Load"): bad settings stop every service
with exit 2 and one line naming the variable; the token is required, never logged; idle
keep-alive connections are closed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx

from tests.support import ROOT, ServiceProcess

BAD_SETTINGS = [  # (service, bad variables: its one line must name each)
    ("replay", {"LOG_LEVEL": "loud", "PORT": "eighty", "MAX_BODY_BYTES": "0"}),
    ("learner", {"LOG_LEVEL": "loud", "PORT": "70000", "KEEP_ALIVE_S": "0"}),
    ("actor", {"LOG_LEVEL": "loud", "NUM_ENVS": "0"}),
]


def test_bad_settings_stop_every_service_with_exit_2_and_one_line() -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env={**os.environ, "REDIS_URL": "", "RLFLEET_TOKEN": "tok-7f3a", **env},
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for service, env in BAD_SETTINGS  # all at once: each pays its imports in parallel
    ]
    for proc, (service, env) in zip(procs, BAD_SETTINGS, strict=True):
        _, err = proc.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 2, (service, env, err)
        assert len(lines) == 1 and "Traceback" not in err, (service, env, err)
        assert lines[0].startswith(f"{service}: bad settings"), lines
        assert all(f"{variable}: " in lines[0] for variable in env), lines
        assert "tok-7f3a" not in err


def test_replay_process_token_and_keep_alive(tmp_path) -> None:
    token = "s3cret-token-never-logged"
    log = tmp_path / "replay.log"
    env = {"REDIS_URL": "", "RLFLEET_TOKEN": token, "LOG_LEVEL": "debug", "KEEP_ALIVE_S": "0.3"}
    with ServiceProcess("replay", env, log_path=log) as replay:
        with httpx.Client(base_url=replay.url, timeout=10) as http:
            assert http.get("/tables").status_code == 401
            assert http.get("/tables", headers={"Authorization": "Bearer nope"}).status_code == 401
            good = {"Authorization": f"Bearer {token}"}
            assert http.get("/tables", headers=good).status_code == 200
            for open_path in ("/healthz", "/metrics"):
                assert http.get(open_path).status_code == 200
            for page in ("/docs", "/openapi.json"):  # the API's pages are behind the token too
                assert http.get(page).status_code == 401
                assert http.get(page, headers=good).status_code == 200

        async def idle_connection_is_closed() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", replay.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := await asyncio.wait_for(reader.read(4096), 5):  # b"": closed
                answer += chunk  # a server that kept the connection open would time out here
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}')
            writer.close()

        asyncio.run(idle_connection_is_closed())
    text = log.read_text()
    assert "GET /tables" in text  # debug logs the requests...
    assert token not in text and "Traceback" not in text  # ...never the token
