using EdgeFleet.Shared.Cli;
using System.Text.Json;
using EdgeFleet.Agent.Inference;

namespace EdgeFleet.Agent.Cli;

/// <summary><c>edgefleet-agent infer --model M --input F</c>: JSON tensors in, JSON tensors out.</summary>
public static class InferCommand
{
    public static int Run(CommandLine args, TextWriter stdout, TextWriter stderr)
    {
        args.AllowOnly("model", "input", "threads");
        var modelPath = args.Require("model");
        var inputPath = args.Require("input");
        var threads = args.GetInt("threads", 1);

        InferRequest? request;
        try
        {
            using var stream = inputPath == "-" ? Console.OpenStandardInput() : File.OpenRead(inputPath);
            request = JsonSerializer.Deserialize(stream, InferenceJsonContext.Default.InferRequest);
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            return Fail(stderr, "BadInput", $"cannot read {inputPath}: {e.Message.ReplaceLineEndings(" ")}");
        }
        if (request is null)
            return Fail(stderr, "BadInput", $"{inputPath} holds null");

        try
        {
            using var session = ModelSession.Load(modelPath, threads);
            var response = session.Run(request.Inputs);
            stdout.WriteLine(JsonSerializer.Serialize(response, InferenceJsonContext.Default.InferResponse));
            return 0;
        }
        catch (InferenceException e)
        {
            return Fail(stderr, e.Code.ToString(), e.Message);
        }
    }

    private static int Fail(TextWriter stderr, string code, string reason)
    {
        stderr.WriteLine($"error: {code}: {reason}");
        return 1;
    }
}
