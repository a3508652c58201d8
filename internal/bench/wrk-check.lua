-- wrk script: GET /v1/check of the paths accessd load collected, with a
-- bearer token, each thread picking paths at random (docs/performance.md,
-- "Load from outside").
--
--   accessd load --url http://127.0.0.1:8080 --token-file token --concurrency 0 --paths-out paths.txt
--   TOKEN=$(cat token) PATHS=paths.txt wrk -t 2 -c 8 -d 10s --latency \
--       -s internal/bench/wrk-check.lua http://127.0.0.1:8080
--
-- Answers other than 200 are counted and printed at the end.

local token = os.getenv("TOKEN") or error("set TOKEN to a bearer token of role service")
local file = os.getenv("PATHS") or error("set PATHS to the file of accessd load --paths-out")
local paths = {}
for line in io.lines(file) do
  if line ~= "" then paths[#paths + 1] = line end
end
if #paths == 0 then error("no path in " .. file) end
local headers = { ["Authorization"] = "Bearer " .. token }

local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(id * 7919)
  bad = 0
end

function request()
  return wrk.format("GET", paths[math.random(#paths)], headers)
end

function response(status, hdrs, body)
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("bad") end
  io.write(string.format("answers other than 200: %d\n", n))
end
