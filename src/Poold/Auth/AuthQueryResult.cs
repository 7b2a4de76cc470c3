using System.Globalization;

namespace Poold.Auth;

/// <summary>How an auth_query lookup ended.</summary>
internal enum AuthQueryStatus
{
    /// <summary>One row with a SCRAM-SHA-256 verifier or an md5 hash.</summary>
    Found,

    /// <summary>No row: the user does not exist (or may not log in). The client gets the mock exchange, then 28P01.</summary>
    NotFound,

    /// <summary>One row, but its password is NULL or neither a SCRAM-SHA-256 verifier nor an md5 hash: handled as NotFound.</summary>
    Unusable,

    /// <summary>The lookup itself failed (no auth_user secret, no primary, an SQL error, more than one row): a configuration problem.</summary>
    Failed,
}

/// <summary>
/// The outcome of an auth_query lookup for one user: the credential, or why there is none. <see cref="Problem"/> is for
/// the log (it names the user and the cause, never a verifier).
/// </summary>
internal sealed record AuthQueryResult(AuthQueryStatus Status, StoredCredential? Credential, string? Problem)
{
    public static AuthQueryResult Failed(string problem) => new(AuthQueryStatus.Failed, null, problem);

    /// <summary>
    /// Reads the rows auth_query returned for <paramref name="user"/>, as PgBouncer does: at most one row of two columns
    /// (name, password); the password a <c>SCRAM-SHA-256$…</c> verifier or <c>md5</c> + 32 hex digits.
    /// </summary>
    public static AuthQueryResult FromRows(string user, IReadOnlyList<string?[]> rows)
    {
        if (rows.Count == 0)
        {
            return new(AuthQueryStatus.NotFound, null, $"auth_query returned no row for user \"{user}\"");
        }

        if (rows.Count > 1)
        {
            return Failed(string.Create(CultureInfo.InvariantCulture,
                $"auth_query returned {rows.Count} rows for user \"{user}\"; it must return at most one (user name, password)"));
        }

        var row = rows[0];
        if (row.Length != 2)
        {
            return Failed(string.Create(CultureInfo.InvariantCulture,
                $"auth_query returned {row.Length} columns for user \"{user}\"; it must return two (user name, password)"));
        }

        var password = row[1];
        if (password is null)
        {
            return new(AuthQueryStatus.Unusable, null, $"auth_query returned a NULL password for user \"{user}\": the user has no password");
        }

        if (password.StartsWith(ScramSha256.Mechanism + "$", StringComparison.Ordinal))
        {
            if (!ScramVerifier.TryParse(password, out var verifier))
            {
                return new(AuthQueryStatus.Unusable, null, $"auth_query returned a malformed SCRAM-SHA-256 verifier for user \"{user}\"");
            }

            ScramVerifier.NoteAuthQueryIterations(verifier.Iterations);
            return new(AuthQueryStatus.Found, StoredCredential.FromScramVerifier(verifier), null);
        }

        if (IsMd5Hash(password))
        {
            return new(AuthQueryStatus.Found, StoredCredential.FromMd5Hash(password), null);
        }

        return new(AuthQueryStatus.Unusable, null,
            $"auth_query returned a password for user \"{user}\" that is neither a SCRAM-SHA-256 verifier nor an md5 hash");
    }

    private static readonly System.Buffers.SearchValues<char> LowerHex = System.Buffers.SearchValues.Create("0123456789abcdef");

    private static bool IsMd5Hash(string text) =>
        text.Length == 35 && text.StartsWith("md5", StringComparison.Ordinal) && !text.AsSpan(3).ContainsAnyExcept(LowerHex);

    public override string ToString() => $"auth_query {Status}";
}
