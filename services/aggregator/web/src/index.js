// The bundle's entry point: the map's functions as window.SmartgridMap for the dashboard's app.js.
import { locate, placeLabels, render } from "./map.js";

window.SmartgridMap = { locate, placeLabels, render };
