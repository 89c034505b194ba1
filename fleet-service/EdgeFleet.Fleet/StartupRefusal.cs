namespace EdgeFleet.Fleet;

/// <summary>
/// Why the fleet service cannot start, as one sentence for the operator instead of a stack trace: its
/// configuration, its files (a store another fleet service holds, a directory it may not write) or its database.
/// Anything else is a bug and keeps its stack trace.
/// </summary>
public static class StartupRefusal
{
    public static string? Explain(Exception e) => e switch
    {
        AggregateException { InnerExceptions.Count: 1 } aggregate => Explain(aggregate.InnerExceptions[0]),
        InvalidOperationException { Message: var message } when message.StartsWith("invalid configuration:", StringComparison.Ordinal) => message,
        IOException or UnauthorizedAccessException => e.Message,
        System.Security.Cryptography.CryptographicException => $"TLS certificate: {e.Message}",
        Npgsql.NpgsqlException => $"PostgreSQL: {e.Message}",
        _ => null,
    };
}
