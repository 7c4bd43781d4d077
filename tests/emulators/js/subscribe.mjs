// The official JavaScript SDK's subscribe()/psubscribe() against the gateway, as an app uses them.
// Usage: node subscribe.mjs <gateway url> <token> <tag>; prints what the SDK received as one JSON line.
import { Redis } from "@upstash/redis";

const [url, token, tag] = process.argv.slice(2);
const redis = new Redis({ url, token, retry: false });
const news = `${tag}news`;
const rooms = `${tag}room:*`;
const seen = { subscribe: [], psubscribe: [], message: [], pmessage: [], errors: [] };

async function until(what, check) {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(seen)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const subscriber = redis.subscribe([news]);
subscriber.on("subscribe", (count) => seen.subscribe.push(count));
subscriber.on("message", ({ channel, message }) => seen.message.push({ channel, message }));
subscriber.on("error", (error) => seen.errors.push(String(error)));
const patterns = redis.psubscribe([rooms]);
patterns.on("psubscribe", (count) => seen.psubscribe.push(count));
patterns.on("pmessage", ({ pattern, channel, message }) => seen.pmessage.push({ pattern, channel, message }));
patterns.on("error", (error) => seen.errors.push(String(error)));
await until("both confirmations", () => seen.subscribe.length === 1 && seen.psubscribe.length === 1);

const receivers = [
  await redis.publish(news, "hello, world"),
  await redis.publish(news, { kind: "json", items: [1, 2], text: "a,b" }),
  await redis.publish(`${tag}room:7`, { user: "ann", says: "hi, all" }),
];
await until("three messages", () => seen.message.length === 2 && seen.pmessage.length === 1);

await subscriber.unsubscribe();
await patterns.unsubscribe();
console.log(JSON.stringify({ ...seen, receivers }));
process.exit(0);
