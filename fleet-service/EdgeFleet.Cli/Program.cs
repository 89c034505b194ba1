using EdgeFleet.Cli;
using EdgeFleet.Shared.Cli;

const string Usage = """
    edgefleet: the fleet operator's and ML engineer's command line.

    Usage:
      edgefleet model demo --out PATH [--seed N] [--samples-out F] [--json]
                                                     train the demo vibration classifier and write it as ONNX
                                                     (--samples-out: health-check inputs for model sign)
      edgefleet keys init --dir D [--roots N] [--root-threshold T] [--signers N] [--threshold T]
                                                     create root keys, the root document and key set v1
      edgefleet keys rotate --dir D [--root] [--signers N] [--threshold T] [--roots N] [--root-threshold T]
                                                     issue the next key set (with --root: the next root too)
      edgefleet model sign --model F --model-id ID --model-version N --profile P[,P] --samples F --keys D --out M
                           [--tolerance X] [--latency-budget-ms X] [--rollout-id R] [--expires-days N] [--url U]
                                                     write the signed manifest M for model F
      edgefleet model push --model F [--fleet URL]     upload a model file to the fleet's artifact store
      edgefleet model samples --kind demo|ocr-cls|ocr-det --count N --out DIR [--seed S] [--size PX (ocr-det; a multiple of 32)]
                           [--condition normal|imbalance|bearing-wear]
                                                     write sample inputs (.npy; labels.txt where known)
      edgefleet model baseline --model M --data DIR [--bins 10] [--card card.json] [--out F] [--json]
                                                     feature baselines for drift (quantile bins per input feature, and confidence)
      edgefleet model quantize --model F --out F [--mode static|dynamic] [--data DIR] [--method minmax|percentile|mse]
                           [--percentile P] [--activations uint8|int8] [--per-tensor] [--channel-multiple 16] [--exclude-nodes a,b]
                           [--exclude-ops Op,Op] [--max-samples N] [--json]
                                                     INT8 quantization (static QDQ from calibration data, or dynamic)
      edgefleet model validate --reference F --candidate F --data DIR [--labels F] [--threads N] [--card C]
                           [--min-agreement X] [--min-cosine X] [--max-accuracy-drop X] [--max-latency-ratio X]
                           [--max-size-ratio X] [--max-mean-abs-error X] [--max-relative-error X] [--report-out F] [--json]
                                                     the validation gate; exits 3 when it rejects the candidate
      edgefleet model register --id ID [--description T] [--owner O]
      edgefleet model push --model-id ID --card C [--fp32 F] [--int8 F] [--variant PROFILE=F,...] [--report R] [--model-version N]
                                                     upload a version to the registry (with a report: validated or rejected)
      edgefleet model list | model show --model-id ID [--model-version N] [--json]
      edgefleet model approve|reject|retire --model-id ID --model-version N [--reason R]
      edgefleet devices update --device D --manifest M --keys D [--fleet URL]
                                                     set a device's desired model (signed manifest + key set)
      edgefleet devices list [--group G] [--selector S] [--json]
                                                     list devices (of a group; whose tags match a selector)
      edgefleet devices tag --device D [--set k=v,k=v] [--remove k,k]
                                                     change a device's tags (site, region, customer, ...)
      edgefleet groups list | groups show --name G [--json]
      edgefleet groups create --name G (--selector S | --devices a,b) [--description T]
                                                     a dynamic group (tag selector) or a static one (listed devices)
      edgefleet groups update --name G [--selector S] [--add a,b] [--remove a,b] [--description T]
      edgefleet groups delete --name G
      edgefleet devices enroll-token [--uses N] [--hours H] [--tags k=v,k=v] [--note T] [--json]
                                                     create a one-time enrollment token (printed once)
      edgefleet devices revoke --device D              disconnect a device and refuse it from now on
      edgefleet api-keys create --name N [--role viewer|operator|admin] [--json]
                                                     create an operator API key (printed once)
      edgefleet api-keys list [--json] | api-keys revoke --id ID
      edgefleet users create --username U [--role viewer|operator|admin] [--password-file F]   (password: first line of F, or stdin)
                                                     a web console user; the first admin is made with the bootstrap admin key
      edgefleet users list [--json] | users set --username U [--role R] [--password-file F] [--disable|--enable]
      edgefleet audit [--target T] [--limit N] [--json]    who changed what, newest first
      edgefleet rollout create --model-id ID --model-version N (--group G | --selector S | --devices a,b)
                           [--phases 1%:600:5,10%:600,50%:600,100%] [--max-failure-rate X] [--on-failure pause|rollback] [--urgent] [--id R]
                           [--quality off|minSamples=N,maxP95LatencyRatio=X,maxConfidenceDrop=X,maxOutputPsi=X,maxErrorRate=X,maxHardExampleRatio=X,minShadowAgreement=X]
                                                     stage an approved version: phases SIZE[:SOAK_S[:MIN_REPORTING]][:shadow]
      edgefleet rollout list | rollout status --id R [--json]
                                                     progress per phase, gate failures, events
      edgefleet rollout pause|resume|approve --id R [--reason T] | rollout abort|rollback|promote --id R --reason T
                                                     (approve: start a draft rollout, approving its validated version)
      edgefleet drift alerts [--all] [--json]          drift alerts: model version, feature, segment, PSI, state
      edgefleet model examples --model-id ID [--device D] [--hours H] [--limit N] [--json]
                                                     hard examples devices uploaded (low confidence), with their labels
      edgefleet model label --model-id ID --label L (--ids a,b | --device D [--hours H])
                                                     feedback: label hard examples for retraining
      edgefleet retrain policy set --model-id ID --executor E [--on-drift features=1,windows=3] [--on-confidence-drop 0.1[,windows=3]]
                           [--every-hours H] [--cooldown-hours 24] [--timeout-minutes 60] [--max-examples N]
                           [--group G | --selector S | --devices a,b] [--phases 10%:600,100%] [--quality ...] [--disable]
      edgefleet retrain policy list [--json] | retrain policy delete --model-id ID
      edgefleet retrain run --model-id ID --reason T   queue a retraining job now (the policy names the executor)
      edgefleet retrain jobs [--model-id ID] [--json] | retrain show|cancel --id J
      edgefleet retrain worker --kind demo [--job F] [--out DIR]
                                                     the reference executor: retrains the demo classifier on its
                                                     baseline data and the labelled hard examples
      edgefleet sim --devices N --rate R [--duration S] [--batch B] [--prefix P] [--ota-failure-rate F] [--shared-keepalive] [--json]
                                                     simulated devices (real enrollment, MQTT, telemetry, OTA reports)
      edgefleet --version | --help

    --fleet defaults to $EDGEFLEET_URL, then http://127.0.0.1:5080. The API key comes from --api-key-file F
    or $EDGEFLEET_API_KEY (a new fleet writes its first admin key to admin.key beside its database). Private keys may be encrypted with a
    passphrase read from --passphrase-file or $EDGEFLEET_KEY_PASSPHRASE.
    """;

try
{
    // The command is its leading words: two (model push), three for retrain policy (retrain policy set).
    var words = args.TakeWhile(a => !a.StartsWith("--", StringComparison.Ordinal)).Take(args is ["retrain", "policy", ..] ? 3 : 2).Count();
    var line = CommandLine.Parse(words >= 2 ? [string.Join(' ', args[..words]), .. args[words..]] : args,
        new HashSet<string> { "help", "version", "json", "root", "shared-keepalive", "per-tensor", "enable", "disable", "all", "urgent" });
    if (line.Has("version"))
    {
        Console.WriteLine($"edgefleet {typeof(Commands).Assembly.GetName().Version?.ToString(3)}");
        return 0;
    }
    if (line.Has("help") && line.Command.Length > 0 && CommandHelp.For(Usage, line.Command) is { } help)
    {
        Console.Write(help);
        return 0;
    }
    if (line.Has("help") || line.Command is "" or "help")
    {
        Console.WriteLine(Usage);
        return line.Command is "" && !line.Has("help") ? 2 : 0;
    }
    return line.Command switch
    {
        "model demo" => Commands.ModelDemo(line),
        "devices list" => await Commands.DevicesListAsync(line).ConfigureAwait(false),
        "devices tag" => await GroupCommands.TagAsync(line).ConfigureAwait(false),
        "groups list" => await GroupCommands.ListAsync(line).ConfigureAwait(false),
        "groups show" => await GroupCommands.ShowAsync(line).ConfigureAwait(false),
        "groups create" => await GroupCommands.CreateAsync(line).ConfigureAwait(false),
        "groups update" => await GroupCommands.UpdateAsync(line).ConfigureAwait(false),
        "groups delete" => await GroupCommands.DeleteAsync(line).ConfigureAwait(false),
        "devices enroll-token" => await IdentityCommands.EnrollTokenAsync(line).ConfigureAwait(false),
        "devices revoke" => await IdentityCommands.RevokeAsync(line).ConfigureAwait(false),
        "api-keys create" => await IdentityCommands.ApiKeyCreateAsync(line).ConfigureAwait(false),
        "api-keys list" => await IdentityCommands.ApiKeyListAsync(line).ConfigureAwait(false),
        "api-keys revoke" => await IdentityCommands.ApiKeyRevokeAsync(line).ConfigureAwait(false),
        "users create" => await UserCommands.CreateAsync(line).ConfigureAwait(false),
        "users list" => await UserCommands.ListAsync(line).ConfigureAwait(false),
        "users set" => await UserCommands.SetAsync(line).ConfigureAwait(false),
        "sim" => await EdgeFleet.Cli.Sim.SimCommand.RunAsync(line).ConfigureAwait(false),
        "audit" => await IdentityCommands.AuditAsync(line).ConfigureAwait(false),
        "devices update" => await OtaCommands.DevicesUpdateAsync(line).ConfigureAwait(false),
        "keys init" => OtaCommands.KeysInit(line),
        "keys rotate" => OtaCommands.KeysRotate(line),
        "model sign" => OtaCommands.ModelSign(line),
        "model push" => await ModelCommands.PushAsync(line).ConfigureAwait(false),
        "model samples" => ModelCommands.Samples(line),
        "model baseline" => ModelCommands.Baseline(line),
        "model quantize" => ModelCommands.Quantize(line),
        "model validate" => ModelCommands.Validate(line),
        "model register" => await ModelCommands.RegisterAsync(line).ConfigureAwait(false),
        "model list" => await ModelCommands.ListAsync(line).ConfigureAwait(false),
        "model show" => await ModelCommands.ShowAsync(line).ConfigureAwait(false),
        "model approve" => await ModelCommands.MoveAsync(line, "approve").ConfigureAwait(false),
        "model reject" => await ModelCommands.MoveAsync(line, "reject").ConfigureAwait(false),
        "model retire" => await ModelCommands.MoveAsync(line, "retire").ConfigureAwait(false),
        "rollout create" => await RolloutCommands.CreateAsync(line).ConfigureAwait(false),
        "rollout list" => await RolloutCommands.ListAsync(line).ConfigureAwait(false),
        "rollout status" => await RolloutCommands.StatusAsync(line).ConfigureAwait(false),
        "rollout pause" => await RolloutCommands.ActAsync(line, "pause").ConfigureAwait(false),
        "rollout resume" => await RolloutCommands.ActAsync(line, "resume").ConfigureAwait(false),
        "rollout abort" => await RolloutCommands.ActAsync(line, "abort").ConfigureAwait(false),
        "rollout rollback" => await RolloutCommands.ActAsync(line, "rollback").ConfigureAwait(false),
        "rollout promote" => await RolloutCommands.ActAsync(line, "promote").ConfigureAwait(false),
        "rollout approve" => await RolloutCommands.ActAsync(line, "approve").ConfigureAwait(false),
        "retrain policy set" => await RetrainCommands.PolicySetAsync(line).ConfigureAwait(false),
        "retrain policy list" => await RetrainCommands.PolicyListAsync(line).ConfigureAwait(false),
        "retrain policy delete" => await RetrainCommands.PolicyDeleteAsync(line).ConfigureAwait(false),
        "retrain run" => await RetrainCommands.RunAsync(line).ConfigureAwait(false),
        "retrain jobs" => await RetrainCommands.JobsAsync(line).ConfigureAwait(false),
        "retrain show" => await RetrainCommands.ShowAsync(line).ConfigureAwait(false),
        "retrain cancel" => await RetrainCommands.CancelAsync(line).ConfigureAwait(false),
        "retrain worker" => RetrainCommands.Worker(line),
        "drift alerts" => await RetrainCommands.DriftAlertsAsync(line).ConfigureAwait(false),
        "model examples" => await RetrainCommands.ExamplesAsync(line).ConfigureAwait(false),
        "model label" => await RetrainCommands.LabelAsync(line).ConfigureAwait(false),
        _ => throw new UsageException($"unknown command '{line.Command}' (see --help)"),
    };
}
catch (UsageException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
catch (CommandException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
