-- wrk script: POST /ofrep/v1/evaluate/flags/checkout-flow with a new targeting key on every request.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("ROLLGATE_TOKEN")
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"context":{"targetingKey":"user-%d-%d","plan":"free","country":"DE","appVersion":"1.4.2","beta":false}}',
    thread_id, counter)
  return wrk.format(nil, "/ofrep/v1/evaluate/flags/checkout-flow", nil, body)
end
