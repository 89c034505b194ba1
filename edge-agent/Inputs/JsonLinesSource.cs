using System.Text.Json;

namespace EdgeFleet.Agent.Inputs;

/// <summary>
/// Reads one JSON array of samples per line from a file or FIFO, so that a sensor process on the device
/// can feed the agent. A malformed line is skipped with a reason, never fatal.
/// </summary>
public sealed class JsonLinesSource(string path, Action<string> onBadLine) : IInputSource
{
    private const int MaxSamples = 1 << 16;
    private StreamReader? _reader;
    private float[] _window = [];
    private long _line;

    public async ValueTask<ReadOnlyMemory<float>?> NextWindowAsync(CancellationToken cancellationToken)
    {
        _reader ??= new StreamReader(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 4096, useAsync: true));
        while (true)
        {
            var line = await _reader.ReadLineAsync(cancellationToken).ConfigureAwait(false);
            if (line is null)
                return null;
            _line++;
            if (string.IsNullOrWhiteSpace(line))
                continue;
            if (TryParse(line, out var reason))
                return _window;
            onBadLine($"{path}:{_line}: {reason}");
        }
    }

    private bool TryParse(string line, out string reason)
    {
        reason = "";
        try
        {
            var reader = new Utf8JsonReader(System.Text.Encoding.UTF8.GetBytes(line));
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
            {
                reason = "expected a JSON array of numbers";
                return false;
            }
            var samples = new List<float>(_window.Length);
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                if (reader.TokenType != JsonTokenType.Number || !reader.TryGetSingle(out var v) || !float.IsFinite(v))
                {
                    reason = "every element must be a finite number";
                    return false;
                }
                if (samples.Count == MaxSamples)
                {
                    reason = $"a window holds at most {MaxSamples} samples";
                    return false;
                }
                samples.Add(v);
            }
            if (samples.Count < 16)
            {
                reason = "a window needs at least 16 samples";
                return false;
            }
            _window = samples.ToArray();
            return true;
        }
        catch (JsonException e)
        {
            reason = e.Message.ReplaceLineEndings(" ");
            return false;
        }
    }

    public void Dispose() => _reader?.Dispose();
}
