using EdgeFleet.ModelTools.Onnx.Proto;
using Google.Protobuf;

namespace EdgeFleet.ModelTools.Onnx;

/// <summary>
/// ONNX external data: a tensor's bytes kept in a side file named by its <c>location</c> entry (relative to the
/// model's directory), at <c>offset</c> for <c>length</c> bytes.
/// </summary>
internal static class ExternalData
{
    private const int Alignment = 4096;

    public static void Read(TensorProto tensor, string directory)
    {
        var entries = tensor.ExternalData.ToDictionary(e => e.Key, e => e.Value);
        if (!entries.TryGetValue("location", out var location) || location.Length == 0)
            throw new OnnxFormatException($"tensor {tensor.Name}: external data without a location");
        var root = Path.GetFullPath(directory);
        var file = Path.GetFullPath(Path.Combine(root, location));
        if (Path.IsPathRooted(location) || !file.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            throw new OnnxFormatException($"tensor {tensor.Name}: external data location '{location}' is outside the model's directory");
        var offset = Number(entries, "offset", tensor.Name) ?? 0;
        try
        {
            using var stream = File.OpenRead(file);
            var length = Number(entries, "length", tensor.Name) ?? stream.Length - offset;
            if (offset < 0 || length < 0 || offset + length > stream.Length)
                throw new OnnxFormatException($"tensor {tensor.Name}: external data [{offset}, +{length}) runs past the end of {location} ({stream.Length} bytes)");
            var bytes = new byte[length];
            stream.Position = offset;
            stream.ReadExactly(bytes);
            tensor.RawData = ByteString.CopyFrom(bytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OnnxFormatException($"tensor {tensor.Name}: cannot read external data {location}: {e.Message}", e);
        }
        tensor.ExternalData.Clear();
        tensor.ClearDataLocation();
    }

    public static void Write(IEnumerable<TensorProto> tensors, string modelPath, long threshold)
    {
        var location = Path.GetFileName(modelPath) + ".data";
        var temp = modelPath + ".data.tmp";
        using (var data = new FileStream(temp, FileMode.Create, FileAccess.Write))
        {
            foreach (var tensor in tensors.Where(t => t.HasRawData && t.RawData.Length >= threshold))
            {
                data.Position = (data.Length + Alignment - 1) / Alignment * Alignment;
                var offset = data.Position;
                tensor.RawData.WriteTo(data);
                tensor.ExternalData.Add(Entry("location", location));
                tensor.ExternalData.Add(Entry("offset", offset.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                tensor.ExternalData.Add(Entry("length", tensor.RawData.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                tensor.DataLocation = TensorProto.Types.DataLocation.External;
                tensor.ClearRawData();
            }
            data.Flush(flushToDisk: true);
        }
        File.Move(temp, modelPath + ".data", overwrite: true);
    }

    private static StringStringEntryProto Entry(string key, string value) => new() { Key = key, Value = value };

    private static long? Number(Dictionary<string, string> entries, string key, string tensor) =>
        !entries.TryGetValue(key, out var text) ? null
        : long.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var n) ? n
        : throw new OnnxFormatException($"tensor {tensor}: external data {key} '{text}' is not a number");
}
