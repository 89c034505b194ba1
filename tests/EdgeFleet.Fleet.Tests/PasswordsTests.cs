using EdgeFleet.Fleet.Identity;

namespace EdgeFleet.Fleet.Tests;

public sealed class PasswordsTests
{
    [Fact]
    public void A_hash_verifies_its_password_only_and_carries_its_own_parameters()
    {
        var hash = Passwords.Hash("correct horse battery", iterations: 1000);
        Assert.StartsWith("pbkdf2-sha256$1000$", hash, StringComparison.Ordinal);
        Assert.True(Passwords.Verify("correct horse battery", hash));
        Assert.False(Passwords.Verify("correct horse batterx", hash));
        Assert.NotEqual(hash, Passwords.Hash("correct horse battery", iterations: 1000)); // salted
        Assert.False(Passwords.Verify("x", "md5$1$AA==$AA=="));
        Assert.False(Passwords.Verify("x", "pbkdf2-sha256$0$AA==$AA=="));
        Assert.False(Passwords.Verify("x", "pbkdf2-sha256$10$not base64$AA=="));
        Assert.StartsWith("pbkdf2-sha256$600000$", Passwords.Decoy, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("alice", null)]
    [InlineData("a.b-c_9", null)]
    [InlineData("Alice", "usernames are")]
    [InlineData("", "usernames are")]
    [InlineData("a b", "usernames are")]
    public void Usernames_are_checked(string name, string? problem) =>
        Assert.Equal(problem is null, Passwords.CheckUsername(name) is null);

    [Fact]
    public void Passwords_need_twelve_characters()
    {
        Assert.Null(Passwords.CheckPassword("twelve chars"));
        Assert.Contains("at least 12", Passwords.CheckPassword("eleven char"), StringComparison.Ordinal);
    }
}
