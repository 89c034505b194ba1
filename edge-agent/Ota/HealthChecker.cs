using System.Diagnostics;
using System.Globalization;
using EdgeFleet.Agent.Inference;
using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Agent.Ota;

/// <summary>
/// Checks a loaded candidate before it may serve: its inputs and outputs match the manifest's schema, it
/// reproduces every sample's expected outputs within the tolerance, and the slowest sample (after a warm-up
/// run) stays within the latency budget.
/// </summary>
public static class HealthChecker
{
    public static OtaFailure? CheckSchema(ModelSession session, ModelSchema schema) =>
        Compare("input", session.Inputs, schema.Inputs) ?? Compare("output", session.Outputs, schema.Outputs);

    public static OtaFailure? Run(ModelSession session, HealthCheck check)
    {
        var slowest = 0.0;
        for (var i = 0; i < check.Samples.Count; i++)
        {
            var sample = check.Samples[i];
            var inputs = sample.Inputs.ToDictionary(kv => kv.Key, kv => new JsonTensor { Shape = kv.Value.Shape, Type = kv.Value.Type, Data = kv.Value.Data });
            InferResponse result;
            try
            {
                if (i == 0)
                    session.Run(inputs); // warm-up: first-run allocations are not the model's latency
                var started = Stopwatch.GetTimestamp();
                result = session.Run(inputs);
                slowest = Math.Max(slowest, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
            catch (InferenceException e)
            {
                return new OtaFailure(OtaError.HealthCheckFailed, $"sample {i}: {e.Message}");
            }
            foreach (var (name, expected) in sample.Expected)
            {
                if (!result.Outputs.TryGetValue(name, out var actual))
                    return new OtaFailure(OtaError.HealthCheckFailed, $"sample {i}: the model produced no output '{name}'");
                if (actual.Data.Length != expected.Data.Length)
                    return new OtaFailure(OtaError.HealthCheckFailed, $"sample {i}: output '{name}' has {actual.Data.Length} values, expected {expected.Data.Length}");
                for (var k = 0; k < actual.Data.Length; k++)
                {
                    var error = Math.Abs(actual.Data[k] - expected.Data[k]);
                    if (!(error <= check.Tolerance))
                        return new OtaFailure(OtaError.HealthCheckFailed, string.Create(CultureInfo.InvariantCulture,
                            $"sample {i}: output '{name}'[{k}] is {actual.Data[k]:G6}, expected {expected.Data[k]:G6} ± {check.Tolerance:G3}"));
                }
            }
        }
        return slowest > check.LatencyBudgetMs
            ? new OtaFailure(OtaError.LatencyBudgetExceeded, string.Create(CultureInfo.InvariantCulture, $"the slowest health-check run took {slowest:F1} ms; the budget is {check.LatencyBudgetMs:F1} ms"))
            : null;
    }

    private static OtaFailure? Compare(string what, IReadOnlyList<TensorSpec> actual, IReadOnlyList<TensorSchema> declared)
    {
        if (actual.Count != declared.Count)
            return new OtaFailure(OtaError.SchemaMismatch, $"the model has {actual.Count} {what}s; the manifest declares {declared.Count}");
        foreach (var d in declared)
        {
            var a = actual.FirstOrDefault(x => x.Name == d.Name);
            if (a is null)
                return new OtaFailure(OtaError.SchemaMismatch, $"the model has no {what} '{d.Name}' (it has {string.Join(", ", actual.Select(x => x.Name))})");
            if (a.TypeName != d.Type || !a.Dims.SequenceEqual(d.Shape))
                return new OtaFailure(OtaError.SchemaMismatch, $"{what} '{d.Name}' is {a.TypeName}{a.ShapeText}; the manifest declares {d.Type}[{string.Join(", ", d.Shape)}]");
        }
        return null;
    }
}
