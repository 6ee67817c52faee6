#!/usr/bin/env python3
"""A local stand-in for the model API of a coding agent, for end-to-end tests.

It plays a fixed script: each reply asks the agent to run the next shell command
(a tool_use block for Claude Code's Messages API, a function_call item for Codex's
Responses API), records what the agent sends back as the command's result, and ends
with a plain text answer. Only the model is fake; the agent CLI is the real one.

usage: model_stub.py anthropic|openai SCRIPT.json RECORD.json
  SCRIPT.json: ["cmd1", "cmd2", ...]; RECORD.json is rewritten after every request:
  {"results": [{"id": ..., "content": ...}], "requests": N}
Prints the port it listens on (127.0.0.1) on the first line of stdout.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FLAVOUR, SCRIPT, RECORD = sys.argv[1], sys.argv[2], sys.argv[3]
COMMANDS = json.load(open(SCRIPT))
LOCK = threading.Lock()
STATE = {"results": [], "requests": 0, "paths": []}


def save():
    with open(RECORD + ".tmp", "w") as f:
        json.dump(STATE, f)
    import os
    os.replace(RECORD + ".tmp", RECORD)


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(text_of(c.get("text", c.get("content", ""))) if isinstance(c, dict) else str(c) for c in content)
    return json.dumps(content)


def sse(handler, events):
    handler.send_response(200)
    handler.send_header("content-type", "text/event-stream")
    handler.send_header("cache-control", "no-cache")
    # No length: the stream ends when the connection does.
    handler.send_header("connection", "close")
    handler.close_connection = True
    handler.end_headers()
    for name, data in events:
        chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        handler.wfile.write(chunk)
        handler.wfile.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        n = int(self.headers.get("content-length", "0"))
        return json.loads(self.rfile.read(n) or b"{}")

    def do_GET(self):
        self.send_response(404)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        req = self.body()
        with LOCK:
            STATE["requests"] += 1
            STATE["paths"].append(self.path)
            if FLAVOUR == "anthropic":
                self.anthropic(req)
            else:
                self.openai(req)
            save()

    # Claude Code: POST /v1/messages, streaming.
    def anthropic(self, req):
        if not self.path.startswith("/v1/messages") or "count_tokens" in self.path:
            body = json.dumps({"input_tokens": 1}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        tools = [t.get("name") for t in req.get("tools", [])]
        done = 0
        for m in req.get("messages", []):
            if m.get("role") != "user" or not isinstance(m.get("content"), list):
                continue
            for block in m["content"]:
                if block.get("type") == "tool_result":
                    done += 1
                    rid = block.get("tool_use_id")
                    if not any(r["id"] == rid for r in STATE["results"]):
                        STATE["results"].append({"id": rid, "content": text_of(block.get("content"))})
        start = {"type": "message_start", "message": {
            "id": f"msg_{STATE['requests']}", "type": "message", "role": "assistant",
            "model": req.get("model", "stub"), "content": [], "stop_reason": None,
            "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}}
        if "Bash" in tools and done < len(COMMANDS):
            tid = f"toolu_stub_{done + 1}"
            events = [
                ("message_start", start),
                ("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "tool_use", "id": tid, "name": "Bash", "input": {}}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "input_json_delta",
                                                   "partial_json": json.dumps({"command": COMMANDS[done], "description": f"step {done + 1}"})}}),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                   "usage": {"output_tokens": 1}}),
                ("message_stop", {"type": "message_stop"}),
            ]
        else:
            events = [
                ("message_start", start),
                ("content_block_start", {"type": "content_block_start", "index": 0,
                                         "content_block": {"type": "text", "text": ""}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "text_delta", "text": "done"}}),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                   "usage": {"output_tokens": 1}}),
                ("message_stop", {"type": "message_stop"}),
            ]
        if req.get("stream"):
            sse(self, events)
        else:
            content = [e[1]["content_block"] for e in events if e[0] == "content_block_start"]
            body = json.dumps({**start["message"], "content": [{"type": "text", "text": "done"}] if content[0]["type"] == "text" else content,
                               "stop_reason": "end_turn"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    # Codex: POST /v1/responses, streaming.
    def openai(self, req):
        done = 0
        for item in req.get("input", []):
            if isinstance(item, dict) and item.get("type") == "function_call_output":
                done += 1
                cid = item.get("call_id")
                out = item.get("output")
                if not any(r["id"] == cid for r in STATE["results"]):
                    STATE["results"].append({"id": cid, "content": text_of(out)})
        rid = f"resp_{STATE['requests']}"
        usage = {"input_tokens": 1, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 2}
        if done < len(COMMANDS):
            item = {"type": "function_call", "id": f"fc_{done + 1}", "call_id": f"call_stub_{done + 1}",
                    "name": "exec_command", "arguments": json.dumps({"cmd": COMMANDS[done]})}
        else:
            item = {"type": "message", "id": f"m_{STATE['requests']}", "role": "assistant",
                    "content": [{"type": "output_text", "text": "done", "annotations": []}]}
        events = [
            ("response.created", {"type": "response.created", "response": {"id": rid}}),
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "response": {"id": rid, "usage": usage}}),
        ]
        sse(self, events)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
save()
print(server.server_address[1], flush=True)
server.serve_forever()
