// Reads the simulator with the vendor's own Node server SDK (@100mslive/server-sdk), as a user
// of that SDK would: every listing through its paging iterator, tokens minted by the SDK from
// HMS_ACCESS_KEY and HMS_SECRET. The SDK's base URL is fixed (https://api.100ms.live/v2), so the
// test points it at the simulator as any HTTP client is pointed at a gateway: HTTPS_PROXY.
// Writes the ids each listing yielded, in order, repeats kept, to the file named by OUT.
"use strict";
const fs = require("fs");
const HMS = require("@100mslive/server-sdk");

async function ids(iterable) {
  const out = [];
  for await (const item of iterable) out.push(item.id);
  return out;
}

async function main() {
  const plan = JSON.parse(fs.readFileSync(process.env.PLAN, "utf8"));
  const hms = new HMS.SDK(process.env.HMS_ACCESS_KEY, process.env.HMS_SECRET);
  const limit = plan.limit;
  const events = {};
  for (const roomId of plan.event_rooms) {
    const filters = { room_id: roomId, type: plan.track_types, limit: plan.event_limit };
    events[roomId] = await ids(hms.analytics.listTrackEvents(filters));
  }
  const result = {
    rooms: await ids(hms.rooms.list({ limit })),
    ended_sessions: await ids(hms.sessions.list({ limit, active: false })),
    live_sessions: await ids(hms.sessions.list({ limit, active: true })),
    recordings: await ids(hms.recordings.list({ limit })),
    track_events: events,
  };
  fs.writeFileSync(process.env.OUT, JSON.stringify(result));
}

main().catch((error) => {
  console.error(`vendor SDK failed: ${error && error.message ? error.message : error}`);
  process.exit(1);
});
