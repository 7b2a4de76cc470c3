namespace Poold.Fuzz.Targets;

/// <summary>Helpers to cut one fuzz input into the pieces a harness feeds in turn.</summary>
internal static class FuzzInput
{
    /// <summary>The bytes up to the first NUL, and those after it (empty when there is none).</summary>
    public static (ReadOnlyMemory<byte> First, ReadOnlyMemory<byte> Second, bool HasSecond) SplitAtNul(ReadOnlySpan<byte> input)
    {
        var nul = input.IndexOf((byte)0);
        return nul < 0 ? (input.ToArray(), ReadOnlyMemory<byte>.Empty, false) : (input[..nul].ToArray(), input[(nul + 1)..].ToArray(), true);
    }
}
