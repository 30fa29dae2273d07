-- wrk script: POST /api/v1/offerings/{id}/subscriptions as many investors at once.
-- Each request has its own Idempotency-Key and the bearer token of the next investor
-- (threads take disjoint turns through the list, so two requests in flight rarely share an
-- investor), for 1 to 5 units.
--   wrk --script benchmarks/subscribe.lua URL -- TOKENS_FILE RUN_NAME THREADS
-- TOKENS_FILE: one bearer token a line; RUN_NAME: a prefix that keeps keys unique per run.

local next_thread = 1

function setup(thread)
  thread:set("thread_number", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  tokens = {}
  for line in io.lines(args[1]) do
    if line ~= "" then
      tokens[#tokens + 1] = line
    end
  end
  run_name = args[2]
  threads = tonumber(args[3])
  sequence = 0
end

function request()
  sequence = sequence + 1
  local turn = sequence * threads + thread_number
  local headers = {
    ["Authorization"] = "Bearer " .. tokens[turn % #tokens + 1],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = run_name .. "-" .. thread_number .. "-" .. sequence,
  }
  local units = 1 + sequence % 5
  return wrk.format("POST", nil, headers, '{"units": "' .. units .. '"}')
end
