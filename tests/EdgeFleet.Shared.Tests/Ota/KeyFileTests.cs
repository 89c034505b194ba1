using EdgeFleet.Shared.Ota;

namespace EdgeFleet.Shared.Tests.Ota;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class KeyFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("edgefleet-keyfile-").FullName;

    [Fact]
    public void Writes_0600_and_reads_back_the_same_key()
    {
        using var key = SigningKey.Generate();
        var path = Path.Combine(_dir, "plain.key");
        KeyFile.Write(path, key, passphrase: null);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        using var read = KeyFile.Read(path, null);
        Assert.Equal(key.KeyId, read.KeyId);
        Assert.True(SigningKey.Verify(key.PublicKeyBytes, "x"u8, read.Sign("x"u8)));
    }

    [Fact]
    public void Encrypted_key_needs_the_right_passphrase_and_holds_no_plaintext()
    {
        using var key = SigningKey.Generate();
        var path = Path.Combine(_dir, "secret.key");
        KeyFile.Write(path, key, "correct horse");
        Assert.DoesNotContain(Convert.ToBase64String(key.ExportPrivateKey()), File.ReadAllText(path), StringComparison.Ordinal);
        Assert.Contains("is encrypted", Assert.Throws<InvalidDataException>(() => KeyFile.Read(path, null)).Message, StringComparison.Ordinal);
        Assert.Contains("wrong passphrase", Assert.Throws<InvalidDataException>(() => KeyFile.Read(path, "wrong")).Message, StringComparison.Ordinal);
        using var read = KeyFile.Read(path, "correct horse");
        Assert.Equal(key.KeyId, read.KeyId);
    }

    [Fact]
    public void Refuses_a_key_file_others_can_read_and_never_overwrites_one()
    {
        using var key = SigningKey.Generate();
        var path = Path.Combine(_dir, "open.key");
        KeyFile.Write(path, key, null);
        Assert.Throws<IOException>(() => KeyFile.Write(path, key, null));
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        Assert.Contains("chmod 600", Assert.Throws<InvalidDataException>(() => KeyFile.Read(path, null)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_write_cut_short_leaves_no_key_at_the_path_and_the_next_write_succeeds()
    {
        using var key = SigningKey.Generate();
        var path = Path.Combine(_dir, "device.key");
        File.WriteAllText(path + ".tmp", "{\"keyId\": \"half"); // what a power cut mid-write leaves behind
        Assert.False(File.Exists(path));
        KeyFile.Write(path, key, null);
        using var read = KeyFile.Read(path, null);
        Assert.Equal(key.KeyId, read.KeyId);
        Assert.False(File.Exists(path + ".tmp"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
