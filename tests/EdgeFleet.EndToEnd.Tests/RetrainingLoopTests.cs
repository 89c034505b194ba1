using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using EdgeFleet.EndToEnd.Tests.Harness;

namespace EdgeFleet.EndToEnd.Tests;

/// <summary>
/// The loop closed with real processes: one site's sensors drift (a replaced accelerometer three times as sensitive),
/// the fleet alerts for that site, a technician labels the site's hard examples, the policy queues one job, the
/// reference worker (the CLI, run by the fleet without a shell) retrains the model, the fleet quantizes and validates
/// the result and drafts its rollout, and an operator's approval starts it. A webhook executor does the same through
/// the job's token.
/// </summary>
public sealed class RetrainingLoopTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(180);
    private const string ModelId = "vibration-classifier";
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-retrain-e2e-").FullName;
    private readonly Fleet _fleet;
    private readonly HttpListener _hook = new();
    private readonly int _hookPort = Repo.FreePort();

    public RetrainingLoopTests()
    {
        Cli(null, "keys", "init", "--dir", P("keys"));
        File.WriteAllText(P("hook.secret"), "retraining hook secret\n");
        _hook.Prefixes.Add($"http://127.0.0.1:{_hookPort}/");
        _hook.Start();
        var fleetPort = Repo.FreePort();
        _fleet = new Fleet(P("fleet"), extraArgs: ["--Fleet:Signing:KeyDirectory", P("keys"), "--Fleet:RolloutTickSeconds", "0.25",
            "--Fleet:Drift:WindowSeconds", "3", "--Fleet:Drift:CheckSeconds", "1", "--Fleet:Drift:SegmentBy", "tag:site", "--Fleet:Drift:AlertWindows", "2",
            "--Fleet:Retraining:CheckSeconds", "1", "--Fleet:Retraining:WorkPath", P("jobs"), "--Fleet:Retraining:CallbackUrl", "http://127.0.0.1:0",
            "--Fleet:Retraining:Executors:demo:Command", "dotnet",
            "--Fleet:Retraining:Executors:demo:Arguments:0=" + Repo.CliDll, "--Fleet:Retraining:Executors:demo:Arguments:1=retrain",
            "--Fleet:Retraining:Executors:demo:Arguments:2=worker", "--Fleet:Retraining:Executors:demo:Arguments:3=--kind", "--Fleet:Retraining:Executors:demo:Arguments:4=demo",
            "--Fleet:Retraining:Executors:hook:Url", $"http://127.0.0.1:{_hookPort}/train", "--Fleet:Retraining:Executors:hook:SecretFile", P("hook.secret")]);
        try
        {
            Cli(null, "model", "demo", "--out", P("v1.onnx"), "--seed", "42");
            Cli(null, "model", "samples", "--kind", "demo", "--count", "600", "--condition", "normal", "--out", P("normal"));
            // The demo model is tiny (8 → 16 → 3): its INT8 form is not faster, so latency is not gated (null leaves a check out).
            File.WriteAllText(P("card.json"), """{"owner": "vibration-ml", "intendedUse": "pump vibration", "labels": ["normal", "imbalance", "bearing-wear"], "thresholds": {"maxLatencyRatio": null}}""");
            Cli(null, "model", "baseline", "--model", P("v1.onnx"), "--data", P("normal"), "--bins", "8", "--card", P("card.json"), "--out", P("card-baselines.json"));
            Cli(null, "model", "validate", "--reference", P("v1.onnx"), "--candidate", P("v1.onnx"), "--data", P("normal"), "--max-samples", "50", "--card", P("card.json"), "--report-out", P("report.json"));
            foreach (var model in new[] { ModelId, "vibration-hooked" })
            {
                Cli(_fleet, "model", "register", "--id", model);
                Cli(_fleet, "model", "push", "--model-id", model, "--card", P("card-baselines.json"), "--fp32", P("v1.onnx"), "--report", P("report.json"));
                Cli(_fleet, "model", "approve", "--model-id", model, "--model-version", "1", "--reason", "baseline attached");
            }
        }
        catch
        {
            _fleet.Dispose(); // xunit does not dispose a test class whose constructor threw
            throw;
        }
    }

    private string P(string name) => Path.Combine(_dir, name);

    private static string Cli(Fleet? fleet, params string[] args) => FleetCli.Run(0, fleet, null, args);

    private async Task<JsonNode> JsonAsync(string path)
    {
        using var response = await _fleet.Get(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode} {text}");
        return JsonNode.Parse(text)!;
    }

    [Fact]
    public async Task A_drifting_site_s_labelled_hard_examples_retrain_the_model_into_a_validated_version_and_a_draft_rollout_that_an_operator_starts()
    {
        Assert.True(File.Exists(Repo.AotAgent), $"no NativeAOT agent at {Repo.AotAgent}: run packaging/publish-agent.sh linux-x64 (scripts/test.sh does)");
        var ota = new JsonObject { ["rootPath"] = P("keys/root.json"), ["fleetUrl"] = _fleet.Url, ["probationMinutes"] = 5 };
        using var healthy = new Agent(P("agents"), "site-a-1", _fleet, P("v1.onnx"), "normal", aot: true, ota: ota.DeepClone().AsObject(), configure: c => c["input"]!["rateHz"] = 100);
        // Site b's pump runs normally, but its new accelerometer reads three times higher from the start.
        using var drifting = new Agent(P("agents"), "site-b-1", _fleet, P("v1.onnx"), "normal", aot: false, ota: ota.DeepClone().AsObject(), configure: c =>
        {
            c["input"]!["rateHz"] = 100;
            c["input"]!["driftAfterSeconds"] = 0;
            c["input"]!["driftGain"] = 3;
        });
        await Wait.ForAsync(async () => (await _fleet.Devices()).Count >= 2 ? "" : null, Patience, () => healthy.Output);
        foreach (var (id, site) in new[] { ("site-a-1", "a"), ("site-b-1", "b") })
            Cli(_fleet, "devices", "tag", "--device", id, "--set", $"site={site}");
        Cli(_fleet, "rollout", "create", "--id", "baseline", "--model-id", ModelId, "--model-version", "1", "--devices", "site-a-1,site-b-1", "--phases", "100%", "--quality", "off");

        // Site b alerts; its pump uploads hard examples (the model is unsure of what it sees).
        await Wait.ForAsync(async () => (await JsonAsync("/api/drift/alerts")).AsArray().Any(a => a!["segment"]!.GetValue<string>() == "b") ? "" : null,
            Patience, () => _fleet.Output[^Math.Min(3000, _fleet.Output.Length)..]);
        Assert.All((await JsonAsync("/api/drift/alerts")).AsArray(), a => Assert.Equal("b", a!["segment"]!.GetValue<string>()));
        await Wait.ForAsync(async () => (await JsonAsync($"/api/models/{ModelId}/examples?device=site-b-1&limit=1000")).AsArray().Count >= 20 ? "" : null,
            Patience, () => drifting.Output[^Math.Min(3000, drifting.Output.Length)..]);

        // A technician checked site b's pump: it runs normally. Their feedback labels its hard examples.
        Assert.Contains("labelled", Cli(_fleet, "model", "label", "--model-id", ModelId, "--device", "site-b-1", "--label", "normal", "--hours", "1"), StringComparison.Ordinal);
        var refused = await _fleet.Send(HttpMethod.Post, $"/api/models/{ModelId}/examples/label", new JsonObject { ["label"] = "on-fire", ["device"] = "site-b-1" });
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);

        // The policy: retrain on drift in one feature for two windows; draft the result for site b first.
        Cli(_fleet, "retrain", "policy", "set", "--model-id", ModelId, "--executor", "demo", "--on-drift", "features=1,windows=2", "--cooldown-hours", "0",
            "--timeout-minutes", "5", "--selector", "site=b", "--phases", "100%");
        JsonNode? job = null;
        await Wait.ForAsync(async () =>
        {
            var jobs = (await JsonAsync($"/api/retraining/jobs?model={ModelId}")).AsArray();
            job = jobs.FirstOrDefault();
            return job?["state"]?.GetValue<string>() is "succeeded" or "failed" ? "" : null;
        }, Patience, () => $"{job?.ToJsonString()}\n{_fleet.Output[^Math.Min(3000, _fleet.Output.Length)..]}");
        Assert.True(job!["state"]!.GetValue<string>() == "succeeded", job.ToJsonString());
        Assert.Equal(("drift", 1, 2), (job["trigger"]!.GetValue<string>(), job["baseVersion"]!.GetValue<int>(), job["outputVersion"]!.GetValue<int>()));
        Assert.Equal(["b"], job["snapshot"]!["segments"]!.AsArray().Select(s => s!.GetValue<string>()));
        // The worker learned from the feedback: on site b's held-out labelled examples it does better than the model it replaces.
        var result = job["result"]!;
        Assert.True(result["labelled"]!.GetValue<int>() >= 20, result.ToJsonString());
        Assert.True(result["feedbackAccuracyAfter"]!.GetValue<double>() > result["feedbackAccuracyBefore"]!.GetValue<double>(), result.ToJsonString());
        Assert.True(result["holdoutAccuracy"]!.GetValue<double>() > 0.9, result.ToJsonString());
        Assert.Single((await JsonAsync($"/api/retraining/jobs?model={ModelId}")).AsArray()); // one job for the episode, for all the checks since

        var version = await JsonAsync($"/api/models/{ModelId}/versions/2");
        Assert.Equal("validated", version["state"]!.GetValue<string>());
        Assert.Equal(["fp32", "int8"], version["artifacts"]!.AsArray().Select(a => a!["kind"]!.GetValue<string>()));
        var rolloutId = job["rolloutId"]!.GetValue<string>();
        var draft = await JsonAsync($"/api/rollouts/{rolloutId}");
        Assert.Equal(("draft", "site=b"), (draft["state"]!.GetValue<string>(), draft["target"]!["selector"]!.GetValue<string>()));
        Assert.Contains("v2 validated", Cli(_fleet, "retrain", "show", "--id", job["id"]!.GetValue<string>()), StringComparison.Ordinal);

        // An operator approves the draft in the console: the version is approved, the release signed, and site b's pump gets v2.
        const string password = "retraining operator password";
        using (var create = ChildProcess.Start("cli", "dotnet", [Repo.CliDll, "users", "create", "--username", "olga", "--role", "operator", "--fleet", _fleet.Url],
            environment: new Dictionary<string, string> { ["EDGEFLEET_API_KEY"] = _fleet.AdminKey }, stdin: password))
        {
            Assert.Equal(0, create.WaitForExit(TimeSpan.FromSeconds(60)));
        }
        using var console = await ConsoleSession.StartAsync(_fleet, "olga", password);
        var jobsPage = await console.GetStringAsync("/console/retraining");
        Assert.Contains($"id=\"job-{job["id"]!.GetValue<string>()}\"", jobsPage, StringComparison.Ordinal);
        Assert.Contains($"href=\"/console/rollouts/{rolloutId}\"", jobsPage, StringComparison.Ordinal);
        Assert.Contains("drift on ≥ 1 feature(s) for ≥ 2 windows", WebUtility.HtmlDecode(jobsPage), StringComparison.Ordinal);
        var draftPage = await console.GetStringAsync($"/console/rollouts/{rolloutId}");
        Assert.Contains("id=\"draft\"", draftPage, StringComparison.Ordinal);
        Assert.Contains("id=\"action-approve\"", draftPage, StringComparison.Ordinal);
        // Before approving, the operator reads what it will do: the target, that nothing has moved, and the devices
        // each phase moves (site b's pump), not "phase 1 of 1, started" and "0 of 0 eligible".
        Assert.Contains("<span id=\"target\">selector site=b</span>", WebUtility.HtmlDecode(draftPage), StringComparison.Ordinal);
        Assert.Contains("id=\"awaiting\"", draftPage, StringComparison.Ordinal);
        Assert.DoesNotContain("eligible installed", draftPage, StringComparison.Ordinal);
        Assert.Contains("site-b-1", draftPage[draftPage.IndexOf("id=\"draft-phases\"", StringComparison.Ordinal)..], StringComparison.Ordinal);
        using (var approve = await console.PostAsync(new Uri($"/console/rollouts/{rolloutId}", UriKind.Relative),
            ConsoleSession.Form(draftPage, ("action", "approve"), ("reason", "feedback from site b"))))
        {
            Assert.Equal(HttpStatusCode.Redirect, approve.StatusCode);
        }
        Assert.Equal("running", (await JsonAsync($"/api/rollouts/{rolloutId}"))["state"]!.GetValue<string>());
        Assert.Equal("approved", (await JsonAsync($"/api/models/{ModelId}/versions/2"))["state"]!.GetValue<string>());
        await Wait.ForAsync(async () => (await JsonAsync("/api/devices")).AsArray().Any(d => d!["device"]!["id"]!.GetValue<string>() == "site-b-1"
            && d["device"]!["activeModel"]?["version"]?.GetValue<string>() == "2") ? "" : null, Patience, () => drifting.Output[^Math.Min(3000, drifting.Output.Length)..]);
        using var again = await _fleet.Send(HttpMethod.Post, $"/api/rollouts/{rolloutId}/approve", new JsonObject());
        Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);

        // The loop closes: v2's inputs are judged against the field it was retrained for, so site b's v1 alerts
        // resolve once its pump left v1 (3 windows of 3 s) and none opens on v2 while it runs.
        Assert.Contains("baselines rebuilt for the field", (await JsonAsync($"/api/models/{ModelId}/versions/2"))["history"]!.ToJsonString(), StringComparison.Ordinal);
        JsonArray? left = null;
        await Wait.ForAsync(async () => (left = (await JsonAsync("/api/drift/alerts")).AsArray()).Count == 0 ? "" : null, TimeSpan.FromSeconds(60),
            () => $"{left}\n{_fleet.Output[^Math.Min(3000, _fleet.Output.Length)..]}");
        await Task.Delay(TimeSpan.FromSeconds(15)); // five more windows of v2
        Assert.DoesNotContain((await JsonAsync("/api/drift/alerts?state=all")).AsArray(), a => a!["version"]!.GetValue<string>() == "2");
        var resolved = (await JsonAsync("/api/drift/alerts?state=all")).AsArray();
        Assert.All(resolved, a => Assert.Equal("resolved", a!["state"]!.GetValue<string>()));
        Assert.All(resolved, a => Assert.Contains("site-b-1", a!["devices"]!.AsArray().Select(d => d!["deviceId"]!.GetValue<string>())));
    }

    [Fact]
    public async Task A_webhook_executor_reads_its_inputs_reports_and_uploads_by_the_job_s_token_and_nothing_more()
    {
        // Policies name a configured executor and a valid draft rollout, for a registered model.
        foreach (var (model, policy, status, says) in new[]
        {
            ("vibration-hooked", new JsonObject { ["executor"] = "rm-rf", ["target"] = new JsonObject { ["selector"] = "site=b" } }, HttpStatusCode.BadRequest, "the fleet has demo, hook"),
            ("vibration-hooked", new JsonObject { ["executor"] = "hook" }, HttpStatusCode.BadRequest, "the target needs a group, a selector or devices"),
            ("vibration-hooked", new JsonObject { ["executor"] = "hook", ["target"] = new JsonObject { ["selector"] = "site=b" }, ["cooldownHours"] = -1 }, HttpStatusCode.BadRequest, "cooldownHours"),
            ("no-such-model", new JsonObject { ["executor"] = "hook", ["target"] = new JsonObject { ["selector"] = "site=b" } }, HttpStatusCode.NotFound, "no model no-such-model"),
        })
        {
            using var refused = await _fleet.Send(HttpMethod.Put, $"/api/retraining/policies/{model}", policy);
            var text = await refused.Content.ReadAsStringAsync();
            Assert.True(refused.StatusCode == status && text.Contains(says, StringComparison.Ordinal), $"{refused.StatusCode}: {text}");
        }
        Cli(_fleet, "retrain", "policy", "set", "--model-id", "vibration-hooked", "--executor", "hook", "--timeout-minutes", "5", "--selector", "site=b");
        Assert.Contains("executor hook, enabled; triggers: manual", Cli(_fleet, "retrain", "policy", "list"), StringComparison.Ordinal);
        Assert.Equal("no drift alerts", Cli(_fleet, "drift", "alerts").Trim());
        using var noPolicy = await _fleet.Send(HttpMethod.Post, "/api/retraining/jobs", new JsonObject { ["modelId"] = ModelId, ["reason"] = "x" });
        Assert.Equal(HttpStatusCode.NotFound, noPolicy.StatusCode);
        var queued = JsonNode.Parse(Cli(_fleet, "retrain", "run", "--model-id", "vibration-hooked", "--reason", "new labelled data", "--json"))!;
        var id = queued["id"]!.GetValue<string>();
        Assert.Equal("queued", queued["state"]!.GetValue<string>());
        using (var twice = await _fleet.Send(HttpMethod.Post, "/api/retraining/jobs", new JsonObject { ["modelId"] = "vibration-hooked", ["reason"] = "again" }))
            Assert.Equal(HttpStatusCode.Conflict, twice.StatusCode); // one open job per model

        var context = await _hook.GetContextAsync().WaitAsync(Patience);
        using var reader = new StreamReader(context.Request.InputStream);
        var body = JsonNode.Parse(await reader.ReadToEndAsync())!;
        context.Response.StatusCode = 202;
        context.Response.Close();
        Assert.StartsWith("sha256=", context.Request.Headers["X-EdgeFleet-Signature"], StringComparison.Ordinal);
        var token = body["token"]!.GetValue<string>();
        Assert.Equal(id, body["job"]!["id"]!.GetValue<string>());

        // The token reads this job's inputs and base model, and reports on it; it is no API key.
        var inputs = JsonNode.Parse(await (await _fleet.Send(HttpMethod.Get, $"/api/retraining/jobs/{id}/inputs", apiKey: token)).Content.ReadAsStringAsync())!;
        Assert.Equal(["normal", "imbalance", "bearing-wear"], inputs["labels"]!.AsArray().Select(l => l!.GetValue<string>()));
        using (var baseModel = await _fleet.Send(HttpMethod.Get, $"/api/retraining/jobs/{id}/base-model", apiKey: token))
            Assert.Equal(new FileInfo(P("v1.onnx")).Length, (await baseModel.Content.ReadAsByteArrayAsync()).Length);
        using (var devices = await _fleet.Send(HttpMethod.Get, "/api/devices", apiKey: token))
            Assert.Equal(HttpStatusCode.Forbidden, devices.StatusCode);
        using (var forged = await _fleet.Send(HttpMethod.Get, $"/api/retraining/jobs/{id}/inputs", apiKey: token[..^2] + "xx"))
            Assert.Equal(HttpStatusCode.Unauthorized, forged.StatusCode);
        using (var running = await _fleet.Send(HttpMethod.Post, $"/api/retraining/jobs/{id}/status", new JsonObject { ["state"] = "running", ["message"] = "epoch 1 of 40" }, apiKey: token))
            Assert.Equal(HttpStatusCode.OK, running.StatusCode);
        using (var wrong = await _fleet.Send(HttpMethod.Post, $"/api/retraining/jobs/{id}/status", new JsonObject { ["state"] = "succeeded" }, apiKey: token))
            Assert.Equal(HttpStatusCode.BadRequest, wrong.StatusCode);
        Assert.Contains(id, Cli(_fleet, "retrain", "jobs", "--model-id", "vibration-hooked"), StringComparison.Ordinal);
        using var http = new HttpClient { BaseAddress = new Uri(_fleet.Url) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using (var noModel = new MultipartFormDataContent { { new ByteArrayContent([1, 2, 3]), "data", "0.npy" } })
        using (var incomplete = await http.PostAsync(new Uri($"/api/retraining/jobs/{id}/output", UriKind.Relative), noModel))
        {
            Assert.Equal(HttpStatusCode.BadRequest, incomplete.StatusCode); // the job keeps waiting for a complete output
            Assert.Contains("needs the model", await incomplete.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        // The output: the model the worker trained, its held-out samples and labels.
        Cli(null, "model", "demo", "--out", P("v2.onnx"), "--seed", "43");
        Cli(null, "model", "samples", "--kind", "demo", "--count", "60", "--out", P("heldout"));
        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(File.ReadAllBytes(P("v2.onnx"))), "model", "model.onnx" },
            { new ByteArrayContent(File.ReadAllBytes(P("heldout/labels.txt"))), "labels", "labels.txt" },
        };
        foreach (var sample in Directory.GetFiles(P("heldout"), "*.npy").Order(StringComparer.Ordinal))
            form.Add(new ByteArrayContent(File.ReadAllBytes(sample)), "data", Path.GetFileName(sample));
        using (var upload = await http.PostAsync(new Uri($"/api/retraining/jobs/{id}/output", UriKind.Relative), form))
            Assert.True(upload.StatusCode == HttpStatusCode.Accepted, await upload.Content.ReadAsStringAsync());

        JsonNode? job = null;
        await Wait.ForAsync(async () => (job = await JsonAsync($"/api/retraining/jobs/{id}"))["state"]!.GetValue<string>() is "succeeded" or "failed" ? "" : null,
            Patience, () => job?.ToJsonString() ?? "");
        Assert.True(job!["state"]!.GetValue<string>() == "succeeded", job.ToJsonString());
        var draft = job["rolloutId"]!.GetValue<string>();
        Assert.Equal("draft", (await JsonAsync($"/api/rollouts/{draft}"))["state"]!.GetValue<string>());
        Assert.Contains("aborted", Cli(_fleet, "rollout", "abort", "--id", draft, "--reason", "not this one"), StringComparison.Ordinal); // a draft can be turned down
        Cli(_fleet, "retrain", "policy", "delete", "--model-id", "vibration-hooked");
        Assert.DoesNotContain("vibration-hooked", Cli(_fleet, "retrain", "policy", "list"), StringComparison.Ordinal);
        Assert.Contains(job["events"]!.AsArray(), e => e!["message"]!.GetValue<string>() == "epoch 1 of 40");
        // A finished job's token is spent.
        using var spent = await _fleet.Send(HttpMethod.Get, $"/api/retraining/jobs/{id}/inputs", apiKey: token);
        Assert.Equal(HttpStatusCode.Unauthorized, spent.StatusCode);
        Assert.DoesNotContain(token, _fleet.Output, StringComparison.Ordinal); // secrets never go into logs
    }

    public void Dispose()
    {
        _fleet.Dispose();
        _hook.Close();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
