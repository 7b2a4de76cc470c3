using System.Collections.Concurrent;

namespace Poold.Protocol;

/// <summary>
/// One shared copy of the short strings thousands of sessions repeat: startup parameter names and values (user, database,
/// application_name, client_encoding …) and client addresses. A session keeps the shared copy and its own decoded string
/// dies young, so ten thousand idle clients of one application hold one "application_name", not ten thousand. Bounded:
/// past <see cref="MaxEntries"/> distinct strings (or for a long one) the string is kept as it is.
/// </summary>
internal static class StringInterner
{
    private const int MaxEntries = 4096;

    private const int MaxLength = 128;

    private static readonly ConcurrentDictionary<string, string> Pool = new(StringComparer.Ordinal);

    public static string Intern(string value)
    {
        if (value.Length > MaxLength)
        {
            return value;
        }

        if (Pool.TryGetValue(value, out var shared))
        {
            return shared;
        }

        return Pool.Count < MaxEntries ? Pool.GetOrAdd(value, value) : value;
    }
}
