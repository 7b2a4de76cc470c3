namespace Poold.Tests;

/// <summary>How unit tests wait for a condition another thread makes true: polled, with a deadline that fails the test.</summary>
internal static class Poll
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    public static async Task UntilAsync(Func<bool> condition, string what)
    {
        var until = DateTime.UtcNow + Deadline;
        while (!condition())
        {
            if (DateTime.UtcNow > until)
            {
                Assert.Fail($"timed out waiting until {what}");
            }

            await Task.Delay(10);
        }
    }
}
