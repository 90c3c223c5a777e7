-- wrk script for the http-upload workload: POST a body of BENCH_UPLOAD_SIZE bytes to
-- /upload and check every answer. The bench app answers with the number of bytes it read,
-- so a server that lost or truncated part of a body is counted, not silently timed.
local size = tonumber(os.getenv("BENCH_UPLOAD_SIZE") or "262144")
local expected = tostring(size)

wrk.method = "POST"
wrk.path = "/upload"
wrk.body = string.rep("x", size)
wrk.headers["Content-Type"] = "application/octet-stream"

-- Each wrk thread has its own Lua state: the counter is a global there, and done() (run in
-- the main state) collects it through the thread objects that setup() saw.
bad = 0
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function response(status, headers, body)
   if status ~= 200 or body ~= expected then
      bad = bad + 1
   end
end

function done(summary, latency, requests)
   local total = 0
   for _, thread in ipairs(threads) do
      total = total + thread:get("bad")
   end
   io.write(string.format("bad responses: %d\n", total))
end
