namespace Poold.Auth;

/// <summary>A password or key in memory. Its <see cref="ToString"/> is <c>***</c>, so it cannot reach a log line by accident.</summary>
internal sealed class Secret(string value)
{
    public string Reveal() => value;

    public override string ToString() => "***";
}
