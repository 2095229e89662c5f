-- wrk script of bench.http_load --generator wrk: POST /predict with the scenes in turn as multipart field "file".
-- The scene paths come after "--" on wrk's command line; each connection cycles over all of them. done() prints
-- one JSON line (latencies in microseconds, answers by status, transport errors) for the benchmark to read.
local boundary = "deepfer-bench-7c1d"
local bodies = {}
local index = 0
local threads = {}
statuses = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for i = 1, #args do
    local file = assert(io.open(args[i], "rb"))
    local data = file:read("*a")
    file:close()
    bodies[#bodies + 1] = "--" .. boundary .. "\r\n"
      .. 'Content-Disposition: form-data; name="file"; filename="scene.jpg"\r\n'
      .. "Content-Type: image/jpeg\r\n\r\n" .. data .. "\r\n--" .. boundary .. "--\r\n"
  end
  index = math.random(#bodies)
end

function request()
  index = index % #bodies + 1
  local headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }
  return wrk.format("POST", "/predict", headers, bodies[index])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[#counts + 1] = string.format('"%d": %d', status, count)
    end
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "statuses": {%s}, "connect": %d, "read": %d, "write": %d, "timeout": %d, '
      .. '"p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, table.concat(counts, ", "), errors.connect, errors.read, errors.write,
    errors.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
