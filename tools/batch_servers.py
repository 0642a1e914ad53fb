"""Batch edits on running ComfyUI servers through their standard HTTP API (comfyui_host.md §25.3,
§26): POST /upload/image, POST /prompt, progress and completion over /ws?clientId=..., the
outputs from /history/<id> and /view, POST /queue {"delete"} and /interrupt to stop.

ComfyUI's queue is the engine: each server runs what it is given one prompt after another. The
only decision made here is where the next image goes: to the live server with the shortest queue
(GET /prompt -> queue_remaining, which counts other users' prompts too), as long as that queue is
shorter than --queue-depth, so the next upload overlaps the running prompt and a slower server
simply gets fewer images. A server that goes away hands its unfinished images back to the others.
Needs only aiohttp (part of every ComfyUI install); never imports ComfyUI or torch.
"""
import asyncio
import collections
import hashlib
import json
import time
import uuid

import aiohttp

UPLOAD_FOLDER = "ledits_batch"     # subfolder of the server's input folder for our uploads
POLL_S = 2.0                        # safety net beside the websocket: finished or lost prompts
RECONNECTS = 3                      # websocket drops tolerated while /system_stats still answers


class ServerGone(Exception):
    """The server cannot be reached any more: its unfinished images move to the other servers."""


class JobFailed(Exception):
    """The server refused or failed this image (validation or execution error): not retried."""


def combo_options(spec):
    """The choices of a combo input in /object_info: [[...], {...}] (V1) or ["COMBO", {"options"}]."""
    if spec and isinstance(spec[0], list):
        return spec[0]
    if spec and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1].get("options", [])
    return []


def history_error(entry):
    """One line from a failed /history entry: the node, its type and the exception."""
    for event, data in entry.get("status", {}).get("messages", []):
        if event == "execution_error":
            return (f"{data.get('node_type')} (node {data.get('node_id')}) failed: "
                    f"{str(data.get('exception_type', '')).split('.')[-1]}: "
                    f"{str(data.get('exception_message', '')).strip()}")
        if event == "execution_interrupted":
            return "interrupted on the server"
    return f"the prompt ended with status {entry.get('status', {}).get('status_str')!r}"


def exec_seconds(entry):
    """Server-side run time from the history's execution_start/_success timestamps (ms), or None."""
    stamps = {event: data.get("timestamp") for event, data in entry.get("status", {}).get("messages", [])}
    start, end = stamps.get("execution_start"), stamps.get("execution_success")
    return round((end - start) / 1000, 3) if start and end else None


class Server:
    """One ComfyUI server: small HTTP helpers that turn connection failures into ServerGone."""

    def __init__(self, url, session, client_id):
        self.url = url.rstrip("/")
        self.ws_url = "ws" + self.url[len("http"):] + f"/ws?clientId={client_id}"
        self.session, self.client_id = session, client_id
        self.alive = True
        self.inflight = {}                  # prompt_id -> (job, monotonic time it was handed over)

    async def request(self, method, path, **kwargs):
        try:
            async with self.session.request(method, self.url + path, **kwargs) as resp:
                body = await resp.read()
                kind = resp.headers.get("Content-Type", "")
                return resp.status, (json.loads(body or b"null") if "json" in kind else body)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError, OSError) as error:
            raise ServerGone(f"{type(error).__name__}: {error}".strip(": ")) from None

    async def get_json(self, path):
        status, body = await self.request("GET", path)
        if status != 200 or isinstance(body, bytes):
            raise ServerGone(f"GET {path} answered {status}")
        return body

    async def check(self, ckpt):
        """Why this server cannot run the batch (None when it can): the pack and the checkpoint."""
        stats = await self.get_json("/system_stats")
        if not (await self.get_json("/object_info/LEditsPPGuidedEdit")).get("LEditsPPGuidedEdit"):
            return "the LEDITS++ pack is not installed on this server"
        loader = (await self.get_json("/object_info/CheckpointLoaderSimple")).get("CheckpointLoaderSimple", {})
        names = combo_options(loader.get("input", {}).get("required", {}).get("ckpt_name", []))
        if ckpt not in names:
            return (f"checkpoint {ckpt!r} is not in this server's models/checkpoints "
                    f"(it has: {', '.join(names[:8]) or 'none'}{' ...' if len(names) > 8 else ''})")
        self.version = stats.get("system", {}).get("comfyui_version", "?")
        return None

    async def queue_remaining(self):
        return int((await self.get_json("/prompt")).get("exec_info", {}).get("queue_remaining", 0))

    async def queued_ids(self):
        body = await self.get_json("/queue")
        return {item[1] for key in ("queue_running", "queue_pending") for item in body.get(key, [])}

    async def upload(self, job):
        """The prepared PNG into <input>/ledits_batch/ (content-addressed name); the LoadImage value."""
        name = f"{job.name[:40]}-{hashlib.sha1(job.png).hexdigest()[:16]}.png"
        form = aiohttp.FormData()
        form.add_field("image", job.png, filename=name, content_type="image/png")
        for key, value in (("type", "input"), ("subfolder", UPLOAD_FOLDER), ("overwrite", "true")):
            form.add_field(key, value)
        status, body = await self.request("POST", "/upload/image", data=form)
        if status != 200 or not isinstance(body, dict):
            raise JobFailed(f"POST /upload/image answered {status}: {body!r:.200}")
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]

    async def queue(self, prompt):
        status, body = await self.request("POST", "/prompt", json={"prompt": prompt, "client_id": self.client_id})
        if status != 200 or not isinstance(body, dict) or body.get("node_errors"):
            error = body.get("error", {}) if isinstance(body, dict) else {}
            details = [f"{e.get('message', '')} {e.get('details', '')}".strip()
                       for node in (body.get("node_errors") or {}).values() for e in node.get("errors", [])] \
                if isinstance(body, dict) else []
            raise JobFailed(f"the server refused the prompt ({status}): "
                            + "; ".join([error.get("message", "")] + details).strip("; "))
        return body["prompt_id"]

    async def history(self, prompt_id):
        """The finished /history entry of a prompt, or None while it is not finished."""
        entry = (await self.get_json(f"/history/{prompt_id}")).get(prompt_id)
        return entry if entry and entry.get("status", {}).get("completed") is not None else None

    async def fetch(self, item):
        params = {k: item.get(k, "") for k in ("filename", "subfolder", "type")}
        status, body = await self.request("GET", "/view", params=params)
        if status != 200 or not isinstance(body, bytes):
            raise JobFailed(f"GET /view {params['filename']} answered {status}")
        return body

    async def stop(self, prompt_ids):
        """Remove our waiting prompts from the queue first (so none starts), then interrupt the one
        running, by id: other users' prompts on a shared server are left alone."""
        await self.request("POST", "/queue", json={"delete": list(prompt_ids)})
        for prompt_id in prompt_ids:
            await self.request("POST", "/interrupt", json={"prompt_id": prompt_id})


class ServerBatch:
    """Runs jobs on servers. report(job, server_url, seconds, files=None, error=None, extra=None)
    commits one finished image (synchronously); build(job, image_name) is the API prompt;
    prepare(job) decodes the image when it is handed out (False: it failed and was reported)."""

    def __init__(self, urls, build, report, bar, tool, inputs, depth=2, prepare=None):
        self.urls, self.build, self.report, self.bar = urls, build, report, bar
        self.prepare = prepare or (lambda job: True)
        self.tool, self.inputs, self.depth = tool, inputs, max(1, depth)
        self.client_id = "ledits-batch-" + uuid.uuid4().hex[:12]
        self.pending = collections.deque()
        self.wake = asyncio.Event()
        self.tasks = set()
        self.stopping = False
        self.stopped = {"interrupted": 0, "removed": 0}

    def spawn(self, coro):
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def connect(self, ckpt):
        """Servers that can run the batch; the others are reported and left out."""
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=300))
        self.servers = []
        for url in self.urls:
            server = Server(url, self.session, self.client_id)
            try:
                problem = await server.check(ckpt)
            except ServerGone as error:
                problem = f"not reachable ({error})"
            if problem:
                self.bar.note(f"server {server.url} left out: {problem}")
            else:
                self.servers.append(server)
        return self.servers

    def lose(self, server, reason):
        """A server went away: its unfinished images go back to the front of the line."""
        if not server.alive:
            return
        server.alive = False
        jobs = [job for job, _ in server.inflight.values()]
        server.inflight.clear()
        self.pending.extendleft(reversed(jobs))
        left = sum(s.alive for s in self.servers)
        self.bar.note(f"server {server.url} went away ({reason}); {len(jobs)} unfinished image(s) "
                      + (f"go to the {left} other server(s)" if left else "have no server left"))
        self.bar.set(server.url, None)
        self.wake.set()

    async def run(self, jobs, stop):
        """Until every job is committed, failed or, after `stop` is set, abandoned. True unless stopped."""
        self.pending.extend(jobs)
        listeners = [self.spawn(self.listen(server)) for server in self.servers]
        try:
            next_poll = time.monotonic() + POLL_S
            while self.pending or any(s.inflight for s in self.servers) or self.finishing():
                if stop.is_set():
                    await self.cancel()
                    return False
                live = [s for s in self.servers if s.alive]
                if not live:
                    while self.pending:
                        self.report(self.pending.popleft(), None, 0.0,
                                    error="no server left: every --server went away before this image ran")
                    break
                await self.dispatch(live)
                if time.monotonic() >= next_poll:
                    await self.poll()
                    next_poll = time.monotonic() + POLL_S
                self.wake.clear()
                waiters = [asyncio.ensure_future(e.wait()) for e in (self.wake, stop)]
                await asyncio.wait(waiters, timeout=POLL_S / 4, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
            return True
        finally:
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
            await self.session.close()

    def finishing(self):
        return any(not t.done() for t in self.tasks if getattr(t, "finishing", False))

    async def dispatch(self, live):
        """Hand out images while some live server's queue is shorter than the depth."""
        while self.pending and not self.stopping:
            lengths = {}
            for server in live:
                if server.alive:
                    try:
                        lengths[server] = await server.queue_remaining()
                    except ServerGone as error:
                        self.lose(server, error)
            open_ = [s for s in lengths if s.alive and lengths[s] < self.depth]
            if not open_ or not self.pending:
                return
            server = min(open_, key=lambda s: (lengths[s], len(s.inflight)))
            job = self.pending.popleft()
            if not self.prepare(job):
                continue
            try:
                prompt = self.build(job, await server.upload(job))
                prompt_id = await server.queue(prompt)
            except ServerGone as error:
                self.pending.appendleft(job)
                self.lose(server, error)
            except JobFailed as error:
                self.report(job, server.url, 0.0, error=str(error))
            else:
                server.inflight[prompt_id] = (job, time.monotonic())
                self.bar.set(server.url, f"{job.name} queued")

    async def poll(self):
        """Catch what the websocket missed: finished prompts, and prompts a restarted server lost."""
        for server in [s for s in self.servers if s.alive and s.inflight]:
            try:
                queued = await server.queued_ids()
                for prompt_id in list(server.inflight):
                    if await server.history(prompt_id) is not None:
                        self.start_finish(server, prompt_id)
                    elif prompt_id not in queued and prompt_id in server.inflight:
                        job, _ = server.inflight.pop(prompt_id)
                        self.bar.note(f"server {server.url} lost the prompt of {job.name}; it runs again")
                        self.pending.appendleft(job)
            except ServerGone as error:
                self.lose(server, error)

    def start_finish(self, server, prompt_id):
        if prompt_id in server.inflight and not self.stopping:
            task = self.spawn(self.finish(server, prompt_id, *server.inflight.pop(prompt_id)))
            task.finishing = True

    async def finish(self, server, prompt_id, job, started):
        """Download the outputs of a finished prompt and commit them (or record the failure)."""
        try:
            entry = await server.history(prompt_id)
            if entry is None:                       # not in the history yet: the poll retries
                server.inflight[prompt_id] = (job, started)
                return
            if entry["status"].get("status_str") != "success":
                self.report(job, server.url, time.monotonic() - started, error=history_error(entry))
                return
            self.bar.set(server.url, f"{job.name} downloading")
            files = [(name, await server.fetch(item))
                     for name, item in self.inputs.output_items(entry["outputs"], job, self.tool)]
            self.report(job, server.url, time.monotonic() - started, files=files,
                        extra={"exec_seconds": exec_seconds(entry), "prompt_id": prompt_id})
        except ServerGone as error:
            self.pending.appendleft(job)
            self.lose(server, error)
        except (JobFailed, RuntimeError, KeyError) as error:
            self.report(job, server.url, time.monotonic() - started, error=str(error))
        finally:
            self.bar.set(server.url, None)
            self.wake.set()

    async def listen(self, server):
        """Progress and completion of our prompts; a dropped socket with a dead server = gone."""
        failures = 0
        while server.alive and not self.stopping:
            try:
                async with self.session.ws_connect(server.ws_url, heartbeat=20) as ws:
                    failures = 0
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self.on_event(server, json.loads(msg.data))
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            if self.stopping or not server.alive:
                return
            failures += 1
            try:
                await server.get_json("/system_stats")
            except ServerGone as error:
                self.lose(server, error)
                return
            if failures > RECONNECTS:
                self.lose(server, "its websocket keeps closing")
                return
            await asyncio.sleep(1.0)

    def on_event(self, server, event):
        data = event.get("data")
        if not isinstance(data, dict) or data.get("prompt_id") not in server.inflight:
            return
        prompt_id = data["prompt_id"]
        job = server.inflight[prompt_id][0]
        if event.get("type") == "progress":
            self.bar.set(server.url, f"{job.name} {data.get('value')}/{data.get('max')}")
        elif event.get("type") == "executing":
            if data.get("node") is None:            # sent after the history entry is stored
                self.start_finish(server, prompt_id)
            else:
                self.bar.set(server.url, f"{job.name} node {data.get('node')}")

    async def cancel(self):
        """Ctrl-C: stop our prompts on every server; downloads already under way may still land."""
        self.stopping = True
        for server in self.servers:
            ids = list(server.inflight)
            if server.alive and ids:
                try:
                    running = await server.get_json("/queue")
                    running = {item[1] for item in running.get("queue_running", [])}
                    await server.stop(ids)
                    self.stopped["interrupted"] += len(running & set(ids))
                    self.stopped["removed"] += len(set(ids) - running)
                except ServerGone:
                    pass
        finishing = [t for t in self.tasks if getattr(t, "finishing", False)]
        if finishing:
            await asyncio.wait(finishing, timeout=15)
