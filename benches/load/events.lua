-- wrk script: POST /api/v1/events with batches of 1,000 track events.
--
-- Every thread builds BODIES distinct bodies up front and cycles through them,
-- so the client spends its time sending, not formatting JSON. Event k of the
-- run (k = body * 1000 + position) is for unit `u-(k % 10000)`, so the bodies
-- cover 10,000 units; benches/raw_insert.rs in crates/store writes the same
-- rows.
--
-- Statuses are counted per thread; done() prints one `events_result` line for
-- events.sh to read, and writes the batch id of every 200 answer to the file
-- named by EVENTS_ACKED_IDS (one per line), so the script can check that each
-- acknowledged batch is in the store.

local EVENTS_PER_BATCH = 1000
local UNITS = 10000
local BODIES = 50

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local bodies = {}
local next_body = 0
-- Per-thread tallies, read by done() through thread:get.
ok = 0
rejected = 0
statuses = {}
acked = {}

local function body(b)
  local events = {}
  for j = 0, EVENTS_PER_BATCH - 1 do
    local k = b * EVENTS_PER_BATCH + j
    events[#events + 1] = string.format(
      '{"kind":"track","name":"calc_request","targetingKey":"u-%d","value":%.1f,"attributes":{"cache_hit":%s}}',
      k % UNITS, ((k * 37) % 5000) / 10, (k % 4 ~= 0) and "true" or "false")
  end
  return '{"events":[' .. table.concat(events, ",") .. ']}'
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("ROLLGATE_TOKEN")
  for b = 0, BODIES - 1 do
    bodies[b] = body(b)
  end
end

function request()
  local b = bodies[next_body]
  next_body = (next_body + 1) % BODIES
  return wrk.format(nil, "/api/v1/events", nil, b)
end

function response(status, headers, text)
  if status == 200 then
    ok = ok + 1
    acked[#acked + 1] = tonumber(string.match(text, '"batch":(%d+)'))
  else
    rejected = rejected + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local ok_total, rejected_total, by_status = 0, 0, {}
  local ids = os.getenv("EVENTS_ACKED_IDS")
  local out = ids and assert(io.open(ids, "w"))
  for _, thread in ipairs(threads) do
    ok_total = ok_total + thread:get("ok")
    rejected_total = rejected_total + thread:get("rejected")
    for status, n in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + n
    end
    if out then
      for _, id in ipairs(thread:get("acked")) do
        out:write(id, "\n")
      end
    end
  end
  if out then out:close() end
  local other = {}
  for status, n in pairs(by_status) do
    other[#other + 1] = status .. ":" .. n
  end
  local seconds = summary.duration / 1e6
  local e = summary.errors
  print(string.format(
    "events_result seconds=%.2f ok=%d non200=%d statuses=%s socket_errors=%d timeouts=%d "
      .. "events_per_s=%.0f requests_per_s=%.1f p50_ms=%.1f p99_ms=%.1f max_ms=%.1f",
    seconds, ok_total, rejected_total, (#other > 0) and table.concat(other, ",") or "-",
    e.connect + e.read + e.write, e.timeout,
    ok_total * EVENTS_PER_BATCH / seconds, (ok_total + rejected_total) / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
