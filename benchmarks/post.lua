-- wrk script: every request a POST with an empty JSON object (for bare POST endpoints).
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
