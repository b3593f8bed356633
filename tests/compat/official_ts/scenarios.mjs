// Client scenarios written against the official Resonate TypeScript SDK (@resonatehq/sdk 0.11.x, generator engine).
//
// This file owns the *client side* of tests/compat/test_official_ts_sdk.py: every scenario is a subcommand that
// builds a `Resonate` from the SDK's public API, points it at a server URL, runs one workflow and prints its
// outcome. The pytest side installs the SDK (npm ci, cached outside the repo) and passes the installed
// node_modules directory in TROTH_TS_NODE_MODULES; without it the SDK is imported the ordinary way (run
// `npm ci` in this directory first).
//
// Usage: node scenarios.mjs --url URL [--deadline SECONDS] SCENARIO [--key value ...]
//
// Output protocol (stdout, one line each):
//   READY <json>   a long-running worker is connected and serving (after a ping round trip through its group);
//   EVENT <json>   progress worth knowing about (e.g. the id of a latent promise);
//   RESULT <json>  the scenario's final value; the process then exits 0.
// Errors go to stderr and the exit status is non-zero. Every scenario but the workers has an overall deadline.

import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const SDK = "@resonatehq/sdk";

// @resonatehq/sdk 0.11 declares `node >= 22`; the only newer API it uses is Promise.withResolvers (Node 22).
// On Node 20 supply the standard behaviour, so the SDK itself runs unmodified.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

async function loadSdk() {
  const base = process.env.TROTH_TS_NODE_MODULES;
  if (!base) return import(SDK);
  const require = createRequire(path.join(base, "resolver.cjs"));
  return import(pathToFileURL(require.resolve(SDK)).href);
}

const { Resonate } = await loadSdk();

// ── output and arguments ────────────────────────────────────────────────────────────────────────────

function emit(tag, payload) {
  process.stdout.write(`${tag} ${JSON.stringify(payload)}\n`);
}

function parseArgs(argv) {
  const opts = { url: undefined, deadline: 40, scenario: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg.startsWith("--")) {
      const key = arg.slice(2);
      const value = argv[i + 1];
      if (value === undefined) throw new Error(`missing value for ${arg}`);
      opts[key] = value;
      i++;
    } else if (opts.scenario === undefined) {
      opts.scenario = arg;
    } else {
      throw new Error(`unexpected argument ${arg}`);
    }
  }
  if (!opts.url) throw new Error("--url is required");
  if (!opts.scenario) throw new Error("a scenario is required");
  return opts;
}

function b64json(value) {
  return Buffer.from(JSON.stringify(value), "utf8").toString("base64");
}

function fromB64json(data) {
  return data ? JSON.parse(Buffer.from(data, "base64").toString("utf8")) : null;
}

// ── durable functions ───────────────────────────────────────────────────────────────────────────────

function greet(ctx, name) {
  return `Hello, ${name}!`;
}

function* hello(ctx, name) {
  return yield* ctx.run(greet, name);
}

function now(ctx) {
  return Date.now();
}

function* sleeper(ctx, ms) {
  const before = yield* ctx.run(now); // :0
  yield* ctx.sleep(ms); // :1, a timer promise
  const after = yield* ctx.run(now); // :2
  return { before, after };
}

function* approval(ctx) {
  const latent = yield* ctx.promise(); // :0, settled by another process
  emit("EVENT", { latent: latent.id, pid: process.pid }); // printed again on every replay; readers take the first
  const value = yield* latent;
  return { promise: latent.id, value };
}

function square(ctx, x) {
  return x * x;
}

function* fanout(ctx, n) {
  const futures = [];
  for (let i = 0; i < n; i++) futures.push(yield* ctx.beginRun(square, i)); // :0 … :n-1, all started first
  const values = [];
  for (const future of futures) values.push(yield* future);
  return values;
}

function shout(ctx, text) {
  return { text: text.toUpperCase(), pid: process.pid, group: "workers", sdk: "ts" };
}

function ping(ctx, token) {
  return token;
}

function* orchestrate(ctx, text) {
  const opts = ctx.options({ target: "workers" });
  const first = yield* ctx.rpc("shout", text, opts); // :0
  const second = yield* ctx.rpc("shout", `${first.text.toLowerCase()}!`, opts); // :1
  return { first, second, orchestrator_pid: process.pid };
}

// Calls functions that only exist on a (troth SDK) worker in group `workers`: compute(x) = 2x and
// compute_flow(x) = {doubled, sdk, pid}.
function* crossOrchestrate(ctx, x) {
  const opts = ctx.options({ target: "workers" });
  const first = yield* ctx.rpc("compute", x, opts);
  const second = yield* ctx.rpc("compute_flow", first, opts);
  return { first, second, orchestrator_pid: process.pid };
}

// ── scenarios ───────────────────────────────────────────────────────────────────────────────────────

async function pingSelf(resonate, group) {
  const token = randomUUID();
  const got = await resonate.rpc(`ping-${group}-${token}`, "ping", token, resonate.options({ target: group }));
  if (got !== token) throw new Error(`ping returned ${JSON.stringify(got)}, expected ${token}`);
}

const SCENARIOS = {
  async hello(resonate, opts) {
    resonate.register("hello", hello);
    return resonate.run(opts.id, hello, opts.name ?? "World");
  },

  async sleep(resonate, opts) {
    resonate.register("sleeper", sleeper);
    const started = performance.now();
    const value = await resonate.run(opts.id, sleeper, Number(opts.ms ?? 1000));
    return { ...value, elapsed_ms: performance.now() - started };
  },

  async latent(resonate, opts) {
    resonate.register("approval", approval);
    return resonate.run(opts.id, approval);
  },

  // Settle a promise from outside any workflow, through the SDK's promises API (raw protocol values).
  async resolve(resonate, opts) {
    const record = await resonate.promises.resolve(opts.id, { data: b64json(JSON.parse(opts.value)) });
    return { id: record.id, state: record.state, value: fromB64json(record.value?.data) };
  },

  async fanout(resonate, opts) {
    resonate.register("fanout", fanout);
    return resonate.run(opts.id, fanout, Number(opts.n ?? 5));
  },

  // Serves `shout` and `ping` in --group until killed.
  async worker(resonate, opts) {
    resonate.register("shout", shout);
    resonate.register("ping", ping);
    await pingSelf(resonate, opts.group);
    emit("READY", { group: opts.group, pid: process.pid, sdk: "ts" });
    return new Promise(() => {});
  },

  async orchestrate(resonate, opts) {
    resonate.register("orchestrate", orchestrate);
    return resonate.run(opts.id, orchestrate, opts.text ?? "hi");
  },

  // Top-level rpc by name to --target; the function is not registered in this process.
  async rpc(resonate, opts) {
    const args = JSON.parse(opts.args ?? "[]");
    return resonate.rpc(opts.id, opts.func, ...args, resonate.options({ target: opts.target ?? "workers" }));
  },

  async "cross-orchestrate"(resonate, opts) {
    resonate.register("crossOrchestrate", crossOrchestrate);
    return resonate.run(opts.id, crossOrchestrate, Number(opts.x ?? 21));
  },
};

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const scenario = SCENARIOS[opts.scenario];
  if (!scenario) throw new Error(`unknown scenario ${opts.scenario}`);
  const group = opts.scenario === "worker" ? opts.group ?? "workers" : "default";
  opts.group = group;
  // A server with authentication on (the *_token.py tests): the token goes to the constructor, which is
  // what makes the SDK send it on its SSE stream too.
  const token = process.env.TROTH_COMPAT_TOKEN || undefined;
  const resonate = new Resonate({ url: opts.url, group, token, logLevel: opts["log-level"] ?? "warn" });

  let timer;
  if (opts.scenario !== "worker") {
    timer = setTimeout(() => {
      process.stderr.write(`ts scenario ${opts.scenario} exceeded its ${opts.deadline}s deadline\n`);
      process.exit(3);
    }, Number(opts.deadline) * 1000);
  }
  const result = await scenario(resonate, opts);
  clearTimeout(timer);
  emit("RESULT", result === undefined ? null : result);
  await Promise.race([resonate.stop(), new Promise((resolve) => setTimeout(resolve, 2000))]);
  process.exit(0);
}

main().catch((err) => {
  process.stderr.write(`ts scenario failed: ${err?.stack ?? err}\n`);
  process.exit(1);
});
