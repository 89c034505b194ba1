using System.Security.Cryptography;
using EdgeFleet.Shared.Wire;
using EdgeFleet.Shared.IO;

namespace EdgeFleet.Agent.Configuration;

/// <summary>
/// The device's stable identity: the configured id, or one generated on first start and kept in
/// <c>{state}/device-id</c> so that a restart (or kill -9) comes back as the same device.
/// </summary>
public static class DeviceIdentity
{
    public static string Resolve(AgentConfig config)
    {
        if (config.DeviceId is { } configured)
            return configured;
        Directory.CreateDirectory(config.StateDirectory);
        var file = Path.Combine(config.StateDirectory, "device-id");
        if (File.Exists(file))
        {
            var stored = File.ReadAllText(file).Trim();
            if (!DeviceId.IsValid(stored))
                throw new ConfigException($"{file} holds an invalid device id; remove it to generate a new one");
            return stored;
        }
        var id = "dev-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
        AtomicFile.Write(file, System.Text.Encoding.UTF8.GetBytes(id + "\n"));
        return id;
    }
}
