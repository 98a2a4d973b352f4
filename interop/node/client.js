// A Node.js client (grpc-js) for meshsim's interop tests: every call pattern of
// mesh.v1.MeshService and a grpc.health.v1 Check against ADDRESS, then one line of
// JSON with what came back. Exits non-zero if any call fails.
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const address = process.argv[2];
if (!address) {
  console.error("usage: node client.js HOST:PORT");
  process.exit(2);
}

const load = (file, includeDirs) =>
  grpc.loadPackageDefinition(
    protoLoader.loadSync(file, { keepCase: true, longs: Number, defaults: true, includeDirs })
  );

const repo = path.resolve(__dirname, "..", "..");
const mesh = load("meshsim/pb/v1/mesh.proto", [path.join(repo, "proto")]).mesh.v1;
const healthDir = path.dirname(require.resolve("grpc-health-check/package.json"));
const health = load("health/v1/health.proto", [path.join(healthDir, "proto")]).grpc.health.v1;

const client = new mesh.MeshService(address, grpc.credentials.createInsecure());
const probe = new health.Health(address, grpc.credentials.createInsecure());
const deadline = () => new Date(Date.now() + 5000);

const unary = () =>
  new Promise((resolve, reject) =>
    client.Process({ request_id: "node-1", data: "hello" }, { deadline: deadline() }, (err, reply) =>
      err ? reject(err) : resolve(reply)
    )
  );

const serverStream = () =>
  new Promise((resolve, reject) => {
    const events = [];
    const call = client.StreamEvents({ stream_id: "s", count: 3 }, { deadline: deadline() });
    call.on("data", (event) => events.push(event.sequence));
    call.on("error", reject);
    call.on("end", () => resolve(events));
  });

const clientStream = () =>
  new Promise((resolve, reject) => {
    const call = client.CollectMetrics({ deadline: deadline() }, (err, summary) => (err ? reject(err) : resolve(summary)));
    for (const value of [1, 2, 6]) call.write({ metric_name: "cpu_usage", value });
    call.end();
  });

const bidi = () =>
  new Promise((resolve, reject) => {
    const answers = [];
    const call = client.Chat({ deadline: deadline() });
    call.on("data", (message) => answers.push(message.message));
    call.on("error", reject);
    call.on("end", () => resolve(answers));
    for (const n of [0, 1, 2]) call.write({ user_id: "node", message: `Message ${n}` });
    call.end();
  });

const check = () =>
  new Promise((resolve, reject) =>
    probe.Check({ service: "mesh.v1.MeshService" }, { deadline: deadline() }, (err, answer) =>
      err ? reject(err) : resolve(answer.status)
    )
  );

(async () => {
  const result = {
    unary: (await unary()).result,
    server_stream: await serverStream(),
    client_stream: (await clientStream()).sum,
    bidi: await bidi(),
    health: await check(),
  };
  console.log(JSON.stringify(result));
  client.close();
  probe.close();
})().catch((error) => {
  console.error(`interop call failed: ${error.code} ${error.details || error.message}`);
  process.exit(1);
});
